//! Judging keys, without I/O: istiod's placeholder keys (per Istio version), kid comparison and
//! staleness after a rotation, RFC 7638 thumbprints, and why a sidecar rejects a token.

use std::collections::BTreeSet;

use serde::Serialize;

use super::model::{Jwk, Jwks, Jwt, b64url_decode, b64url_encode};

/// The prefix istiod 1.8–1.20 puts in the `n` of its placeholder key.
const FAILED_FETCH_PREFIX: &str = "Error-IstiodFailedToFetchJwksUri-";
/// The start of `n` of istiod's constant `FakeJwks` (Istio 1.21–1.29.0).
const FAKE_JWKS_N: &str = "vqS7RN4b34i3_5Yy";
/// The start of `n` of istiod's constant `PublicOnlyJwks` (Istio 1.29.1+).
const PUBLIC_ONLY_JWKS_N: &str = "0xObjM0UvS_oaazjpEYl";
/// Envoy's default `clock_skew_seconds` for jwt_authn.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// A key set istiod sends a sidecar when it could not fetch the real one: tokens are then
/// rejected with `Jwks doesn't have key to match kid or alg from Jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Placeholder {
    /// Istio ≤1.7: an empty `inline_string`.
    Empty,
    /// Istio 1.8–1.14: kid `abc`, `n` = `Error-IstiodFailedToFetchJwksUri-` + base64url(uri).
    FailedFetchSuffix {
        /// The URI istiod failed to fetch, when it decodes.
        uri: Option<String>,
    },
    /// Istio 1.15–1.20: `n` = base64url(`Error-IstiodFailedToFetchJwksUri-` + uri).
    FailedFetchEncoded {
        /// The URI istiod failed to fetch.
        uri: Option<String>,
    },
    /// Istio 1.21–1.29.0: the constant `FakeJwks`.
    FakeJwks,
    /// Istio 1.29.1+: the constant `PublicOnlyJwks`.
    PublicOnlyJwks,
}

impl Placeholder {
    /// The Istio versions that send this placeholder.
    pub fn istio_versions(&self) -> &'static str {
        match self {
            Placeholder::Empty => "≤1.7",
            Placeholder::FailedFetchSuffix { .. } => "1.8–1.14",
            Placeholder::FailedFetchEncoded { .. } => "1.15–1.20",
            Placeholder::FakeJwks => "1.21–1.29.0",
            Placeholder::PublicOnlyJwks => "1.29.1+",
        }
    }

    /// The URI the placeholder names, if it carries one.
    pub fn uri(&self) -> Option<&str> {
        match self {
            Placeholder::FailedFetchSuffix { uri } | Placeholder::FailedFetchEncoded { uri } => {
                uri.as_deref()
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Placeholder::Empty => "an empty key set",
            Placeholder::FailedFetchSuffix { .. } | Placeholder::FailedFetchEncoded { .. } => {
                "the \"Error-IstiodFailedToFetchJwksUri\" placeholder key"
            }
            Placeholder::FakeJwks => "the FakeJwks placeholder key",
            Placeholder::PublicOnlyJwks => "the PublicOnlyJwks placeholder key",
        };
        write!(
            f,
            "{what} istiod sends when its fetch failed (Istio {})",
            self.istio_versions()
        )?;
        if let Some(u) = self.uri() {
            write!(f, " for {u}")?;
        }
        Ok(())
    }
}

/// Is this `local_jwks.inline_string` one of istiod's placeholders?
pub fn placeholder_in(inline: &str) -> Option<Placeholder> {
    if inline.trim().is_empty() {
        return Some(Placeholder::Empty);
    }
    let jwks = Jwks::parse(inline.as_bytes()).ok()?;
    jwks.keys.iter().find_map(placeholder_key)
}

/// Is this key one of istiod's placeholder keys?
pub fn placeholder_key(key: &Jwk) -> Option<Placeholder> {
    let Jwk::Rsa(k) = key else { return None };
    if let Some(rest) = k.n.strip_prefix(FAILED_FETCH_PREFIX) {
        let uri = b64url_decode(rest).and_then(|b| String::from_utf8(b).ok());
        return Some(Placeholder::FailedFetchSuffix { uri });
    }
    if k.n.starts_with(FAKE_JWKS_N) {
        return Some(Placeholder::FakeJwks);
    }
    if k.n.starts_with(PUBLIC_ONLY_JWKS_N) {
        return Some(Placeholder::PublicOnlyJwks);
    }
    let decoded = b64url_decode(&k.n)?;
    let rest = decoded.strip_prefix(FAILED_FETCH_PREFIX.as_bytes())?;
    Some(Placeholder::FailedFetchEncoded {
        uri: String::from_utf8(rest.to_vec()).ok(),
    })
}

/// RFC 7638 thumbprint (base64url SHA-256 of the required members), `None` for key types we
/// don't model.
pub fn thumbprint(key: &Jwk) -> Option<String> {
    // Members in lexicographic order, no whitespace (RFC 7638 §3).
    let canonical = match key {
        Jwk::Rsa(k) => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, js(&k.e), js(&k.n)),
        Jwk::Ec(k) => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            js(&k.crv),
            js(&k.x),
            js(&k.y)
        ),
        Jwk::Okp(k) => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, js(&k.crv), js(&k.x)),
        Jwk::Other(_) => return None,
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    Some(b64url_encode(digest.as_ref()))
}

fn js(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// How a key is named in messages: its kid, else the start of its thumbprint.
pub fn key_label(key: &Jwk) -> String {
    match (key.kid(), thumbprint(key)) {
        (Some(k), _) => k.to_string(),
        (None, Some(t)) => format!("thumbprint:{}", &t[..t.len().min(12)]),
        (None, None) => format!("{} key without kid", key.kty()),
    }
}

/// The keys a sidecar holds compared with the keys its JWKS URI serves now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyComparison {
    /// Keys served now that the sidecar lacks (tokens signed with them are rejected).
    pub missing: Vec<String>,
    /// Keys the sidecar holds that are no longer served (harmless, gone after the next push).
    pub retired: Vec<String>,
}

impl KeyComparison {
    /// The sidecar misses current keys: it has stale keys from before a rotation.
    pub fn is_stale(&self) -> bool {
        !self.missing.is_empty()
    }
}

/// Compare held and current keys by thumbprint (falling back to kid for unmodelled types).
pub fn compare_keys(held: &Jwks, current: &Jwks) -> KeyComparison {
    fn id(k: &Jwk) -> String {
        thumbprint(k).unwrap_or_else(|| format!("kid:{}", k.kid().unwrap_or("")))
    }
    let held_ids: BTreeSet<String> = held.keys.iter().map(id).collect();
    let current_ids: BTreeSet<String> = current.keys.iter().map(id).collect();
    let mut missing: Vec<String> = current
        .keys
        .iter()
        .filter(|k| !held_ids.contains(&id(k)))
        .map(key_label)
        .collect();
    let mut retired: Vec<String> = held
        .keys
        .iter()
        .filter(|k| !current_ids.contains(&id(k)))
        .map(key_label)
        .collect();
    missing.sort();
    missing.dedup();
    retired.sort();
    retired.dedup();
    KeyComparison { missing, retired }
}

/// What a sidecar holds for one JWT provider, classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HeldKeys {
    /// Keys inlined by istiod (`local_jwks.inline_string`).
    Keys {
        /// The key set.
        jwks: Jwks,
    },
    /// One of istiod's placeholders: every token of this issuer is rejected.
    Placeholder {
        /// Which one.
        placeholder: Placeholder,
    },
    /// Envoy fetches the keys itself (`remote_jwks`, PILOT_JWT_ENABLE_REMOTE_JWKS).
    Remote {
        /// The URI Envoy fetches.
        uri: String,
    },
    /// The inline string is not a JWKS.
    Invalid,
    /// No key source in the provider.
    Missing,
}

impl HeldKeys {
    /// Classify a provider's key source.
    pub fn classify(inline: Option<&str>, remote_uri: Option<&str>) -> Self {
        match (inline, remote_uri) {
            (Some(s), _) => match placeholder_in(s) {
                Some(placeholder) => HeldKeys::Placeholder { placeholder },
                None => match Jwks::parse(s.as_bytes()) {
                    Ok(jwks) => HeldKeys::Keys { jwks },
                    Err(_) => HeldKeys::Invalid,
                },
            },
            (None, Some(u)) => HeldKeys::Remote { uri: u.to_string() },
            (None, None) => HeldKeys::Missing,
        }
    }
}

/// One jwt_authn provider of a sidecar (from its config_dump).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderKeys {
    /// Provider name (`origins-0`, …).
    pub name: String,
    /// Issuer it accepts.
    pub issuer: String,
    /// Audiences it accepts (empty = any).
    pub audiences: Vec<String>,
    /// Its keys.
    pub keys: HeldKeys,
}

/// A reason a sidecar rejects a token (or would).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Rejection {
    /// The token has no `iss`.
    NoIssuer,
    /// No provider accepts the token's issuer.
    IssuerNotConfigured {
        /// The token's issuer.
        issuer: String,
        /// The issuers the sidecar accepts.
        configured: Vec<String>,
    },
    /// The provider holds a placeholder: istiod could not fetch the keys.
    PlaceholderKeys {
        /// Provider name.
        provider: String,
        /// Which placeholder.
        placeholder: Placeholder,
    },
    /// No held key matches the token's kid/alg (stale keys after a rotation, or a wrong issuer).
    KidNotHeld {
        /// Provider name.
        provider: String,
        /// The token's kid.
        kid: Option<String>,
        /// The token's alg.
        alg: Option<String>,
        /// The kids the provider holds.
        held: Vec<String>,
    },
    /// The provider's inline keys are not a JWKS.
    InvalidKeys {
        /// Provider name.
        provider: String,
    },
    /// `exp` is past (with Envoy's 60 s clock skew).
    Expired {
        /// `exp`.
        exp: i64,
        /// Seconds since expiry.
        ago: i64,
    },
    /// `nbf` is in the future.
    NotYetValid {
        /// `nbf`.
        nbf: i64,
    },
    /// None of the token's audiences is accepted.
    AudienceMismatch {
        /// Provider name.
        provider: String,
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences the provider accepts.
        allowed: Vec<String>,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NoIssuer => write!(f, "the token has no iss claim"),
            Rejection::IssuerNotConfigured { issuer, configured } => write!(
                f,
                "issuer {issuer:?} is not configured on this sidecar (it accepts: {})",
                if configured.is_empty() {
                    "no JWT issuer at all".to_string()
                } else {
                    configured.join(", ")
                }
            ),
            Rejection::PlaceholderKeys {
                provider,
                placeholder,
            } => write!(f, "provider {provider} holds {placeholder}"),
            Rejection::KidNotHeld {
                provider,
                kid,
                alg,
                held,
            } => write!(
                f,
                "provider {provider} has no key for kid {} (alg {}); it holds: {} — stale keys after a rotation?",
                kid.as_deref().unwrap_or("<none>"),
                alg.as_deref().unwrap_or("<none>"),
                if held.is_empty() {
                    "<none>".to_string()
                } else {
                    held.join(", ")
                }
            ),
            Rejection::InvalidKeys { provider } => {
                write!(f, "provider {provider} holds keys that are not a JWKS")
            }
            Rejection::Expired { exp, ago } => {
                write!(f, "the token expired {ago}s ago (exp {exp})")
            }
            Rejection::NotYetValid { nbf } => write!(f, "the token is not valid before {nbf}"),
            Rejection::AudienceMismatch {
                provider,
                token,
                allowed,
            } => write!(
                f,
                "audience mismatch: the token is for [{}], provider {provider} accepts [{}]",
                token.join(", "),
                allowed.join(", ")
            ),
        }
    }
}

/// Would a key verify a token with this kid/alg? (Envoy matches kid when both have one, and
/// the key type/alg must fit the token's alg.)
pub fn key_matches(key: &Jwk, kid: Option<&str>, alg: Option<&str>) -> bool {
    if let (Some(want), Some(have)) = (kid, key.kid())
        && want != have
    {
        return false;
    }
    if let (Some(want), Some(have)) = (alg, key.alg())
        && want != have
    {
        return false;
    }
    match alg {
        Some(a) if a.starts_with("RS") || a.starts_with("PS") => matches!(key, Jwk::Rsa(_)),
        Some(a) if a.starts_with("ES") => matches!(key, Jwk::Ec(_)),
        Some("EdDSA") => matches!(key, Jwk::Okp(_)),
        _ => true,
    }
}

/// Why the sidecar holding `providers` rejects `jwt` at `now` (seconds since the epoch). An
/// empty list means it should pass (the signature is not checked here).
pub fn diagnose_token(jwt: &Jwt, providers: &[ProviderKeys], now: i64) -> Vec<Rejection> {
    let mut out = Vec::new();
    // Saturating: `exp`/`nbf` come from the token and may be anywhere in i64.
    if let Some(exp) = jwt.claims.exp
        && now > exp.saturating_add(CLOCK_SKEW_SECONDS)
    {
        out.push(Rejection::Expired {
            exp,
            ago: now.saturating_sub(exp),
        });
    }
    if let Some(nbf) = jwt.claims.nbf
        && nbf > now.saturating_add(CLOCK_SKEW_SECONDS)
    {
        out.push(Rejection::NotYetValid { nbf });
    }
    let Some(iss) = jwt.claims.iss.as_deref() else {
        out.push(Rejection::NoIssuer);
        return out;
    };
    let matching: Vec<&ProviderKeys> = providers.iter().filter(|p| p.issuer == iss).collect();
    if matching.is_empty() {
        let mut configured: Vec<String> = providers.iter().map(|p| p.issuer.clone()).collect();
        configured.sort();
        configured.dedup();
        out.push(Rejection::IssuerNotConfigured {
            issuer: iss.to_string(),
            configured,
        });
        return out;
    }
    let kid = jwt.header.kid.as_deref();
    let alg = jwt.header.alg.as_deref();
    let token_aud = jwt.claims.aud.to_vec();
    // One provider that would accept the token is enough; otherwise report each one's reason.
    let mut reasons = Vec::new();
    for p in &matching {
        let mut mine = Vec::new();
        match &p.keys {
            HeldKeys::Placeholder { placeholder } => mine.push(Rejection::PlaceholderKeys {
                provider: p.name.clone(),
                placeholder: placeholder.clone(),
            }),
            HeldKeys::Keys { jwks } => {
                if !jwks.keys.iter().any(|k| key_matches(k, kid, alg)) {
                    mine.push(Rejection::KidNotHeld {
                        provider: p.name.clone(),
                        kid: kid.map(String::from),
                        alg: alg.map(String::from),
                        held: jwks.keys.iter().map(key_label).collect(),
                    });
                }
            }
            HeldKeys::Invalid | HeldKeys::Missing => mine.push(Rejection::InvalidKeys {
                provider: p.name.clone(),
            }),
            HeldKeys::Remote { .. } => {}
        }
        if !p.audiences.is_empty() && !token_aud.iter().any(|a| p.audiences.contains(a)) {
            mine.push(Rejection::AudienceMismatch {
                provider: p.name.clone(),
                token: token_aud.clone(),
                allowed: p.audiences.clone(),
            });
        }
        if mine.is_empty() {
            return out;
        }
        reasons.extend(mine);
    }
    out.extend(reasons);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::model::{Audience, Claims, EcKey, JwtHeader, RsaKey};

    fn rsa(kid: &str, n: &str) -> Jwk {
        Jwk::Rsa(RsaKey {
            kid: Some(kid.into()),
            alg: None,
            use_: None,
            n: n.into(),
            e: "AQAB".into(),
        })
    }

    #[test]
    fn placeholder_for_each_istio_shape() {
        let uri = "https://keycloak-olaf-sso.apps.example.com/auth/realms/olaf/protocol/openid-connect/certs";
        // ≤1.7
        assert_eq!(placeholder_in(""), Some(Placeholder::Empty));
        // 1.8–1.14
        let s = format!(
            r#"{{"keys":[ {{"e":"AQAB","kid":"abc","kty":"RSA","n":"Error-IstiodFailedToFetchJwksUri-{}"}}]}}"#,
            b64url_encode(uri.as_bytes())
        );
        let p = placeholder_in(&s).unwrap();
        assert_eq!(
            p,
            Placeholder::FailedFetchSuffix {
                uri: Some(uri.into())
            }
        );
        assert_eq!(p.istio_versions(), "1.8–1.14");
        // 1.15–1.20 (istiod's CreateFakeJwks)
        let s = format!(
            r#"{{"keys":[ {{"e":"AQAB","kid":"abc","kty":"RSA","n":"{}"}}]}}"#,
            b64url_encode(format!("Error-IstiodFailedToFetchJwksUri-{uri}").as_bytes())
        );
        let p = placeholder_in(&s).unwrap();
        assert_eq!(p.uri(), Some(uri));
        assert_eq!(p.istio_versions(), "1.15–1.20");
        // 1.21–1.29.0 (private members are in istiod's constant; ignored)
        let s = r#"{"keys":[{"d":"x","e":"AQAB","kty":"RSA","n":"vqS7RN4b34i3_5YyhygtBe33gI6GK_0ldW8WMZaunS28T"}]}"#;
        assert_eq!(placeholder_in(s), Some(Placeholder::FakeJwks));
        // 1.29.1+
        let s = r#"{"keys":[{"e":"AQAB","kty":"RSA","n":"0xObjM0UvS_oaazjpEYlAbc"}]}"#;
        let p = placeholder_in(s).unwrap();
        assert_eq!(p, Placeholder::PublicOnlyJwks);
        assert_eq!(
            p.to_string(),
            "the PublicOnlyJwks placeholder key istiod sends when its fetch failed (Istio 1.29.1+)"
        );
        // Real keys are not placeholders.
        let s = r#"{"keys":[{"e":"AQAB","kty":"RSA","kid":"k","n":"u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw"}]}"#;
        assert_eq!(placeholder_in(s), None);
        assert_eq!(placeholder_in("not json"), None);
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let key = Jwk::Rsa(RsaKey {
            kid: Some("2011-04-29".into()),
            alg: Some("RS256".into()),
            use_: None,
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        });
        assert_eq!(
            thumbprint(&key).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let ec = Jwk::Ec(EcKey {
            kid: None,
            alg: None,
            use_: None,
            crv: "P-256".into(),
            x: "a".into(),
            y: "b".into(),
        });
        assert!(key_label(&ec).starts_with("thumbprint:"));
    }

    #[test]
    fn rotation_makes_held_keys_stale() {
        let before = Jwks {
            keys: vec![rsa("k1", "n1")],
        };
        let after = Jwks {
            keys: vec![rsa("k2", "n2")],
        };
        let c = compare_keys(&before, &after);
        assert!(c.is_stale());
        assert_eq!(c.missing, vec!["k2"]);
        assert_eq!(c.retired, vec!["k1"]);
        let both = Jwks {
            keys: vec![rsa("k1", "n1"), rsa("k2", "n2")],
        };
        assert!(!compare_keys(&both, &after).is_stale());
        // Same kid, new key material: still stale.
        let c = compare_keys(
            &before,
            &Jwks {
                keys: vec![rsa("k1", "other")],
            },
        );
        assert_eq!(c.missing, vec!["k1"]);
    }

    fn jwt(kid: &str, iss: &str, aud: &str, exp: i64) -> Jwt {
        Jwt {
            header: JwtHeader {
                alg: Some("RS256".into()),
                kid: Some(kid.into()),
                typ: None,
            },
            claims: Claims {
                iss: Some(iss.into()),
                aud: Audience::One(aud.into()),
                exp: Some(exp),
                ..Claims::default()
            },
            signed: true,
        }
    }

    fn provider(keys: HeldKeys, aud: &[&str]) -> ProviderKeys {
        ProviderKeys {
            name: "origins-0".into(),
            issuer: "https://sso/realms/olaf".into(),
            audiences: aud.iter().map(|s| s.to_string()).collect(),
            keys,
        }
    }

    #[test]
    fn token_rejections() {
        let good = HeldKeys::Keys {
            jwks: Jwks {
                keys: vec![rsa("k1", "n1")],
            },
        };
        let t = jwt("k1", "https://sso/realms/olaf", "web", 1000);
        assert!(diagnose_token(&t, &[provider(good.clone(), &["web"])], 900).is_empty());
        // expired, with skew
        assert!(diagnose_token(&t, &[provider(good.clone(), &[])], 1060).is_empty());
        assert!(matches!(
            diagnose_token(&t, &[provider(good.clone(), &[])], 1100)[0],
            Rejection::Expired { ago: 100, .. }
        ));
        // issuer
        let other = jwt("k1", "https://elsewhere", "web", 1000);
        let r = diagnose_token(&other, &[provider(good.clone(), &[])], 0);
        assert!(
            matches!(&r[0], Rejection::IssuerNotConfigured { configured, .. } if configured == &["https://sso/realms/olaf"])
        );
        // stale kid
        let rotated = jwt("k2", "https://sso/realms/olaf", "web", 1000);
        let r = diagnose_token(&rotated, &[provider(good.clone(), &[])], 0);
        assert!(matches!(&r[0], Rejection::KidNotHeld { held, .. } if held == &["k1"]));
        assert!(r[0].to_string().contains("stale keys"));
        // placeholder
        let ph = HeldKeys::classify(
            Some(r#"{"keys":[{"e":"AQAB","kty":"RSA","n":"0xObjM0UvS_oaazjpEYl"}]}"#),
            None,
        );
        let r = diagnose_token(&t, &[provider(ph, &[])], 0);
        assert!(matches!(
            &r[0],
            Rejection::PlaceholderKeys {
                placeholder: Placeholder::PublicOnlyJwks,
                ..
            }
        ));
        // audience
        let r = diagnose_token(&t, &[provider(good, &["mobile"])], 0);
        assert!(matches!(&r[0], Rejection::AudienceMismatch { .. }));
    }

    #[test]
    fn extreme_exp_and_nbf_do_not_overflow() {
        // Found by fuzzing (shared/fuzz, target jwt): `exp + skew` overflowed (a panic in debug
        // builds, "expired" in release) for a token with exp = i64::MAX.
        let keys = HeldKeys::Keys {
            jwks: Jwks {
                keys: vec![rsa("k1", "n1")],
            },
        };
        let p = [provider(keys, &[])];
        let t = jwt("k1", "https://sso/realms/olaf", "web", i64::MAX);
        assert!(diagnose_token(&t, &p, 1_750_000_000).is_empty());
        let t = jwt("k1", "https://sso/realms/olaf", "web", i64::MIN);
        assert!(matches!(
            diagnose_token(&t, &p, i64::MAX)[..],
            [Rejection::Expired { ago: i64::MAX, .. }]
        ));
        let mut t = jwt("k1", "https://sso/realms/olaf", "web", i64::MAX);
        t.claims.nbf = Some(i64::MAX);
        assert!(matches!(
            diagnose_token(&t, &p, i64::MAX)[..],
            [Rejection::NotYetValid { .. }] | []
        ));
    }

    #[test]
    fn alg_must_fit_the_key_type() {
        let k = rsa("k1", "n");
        assert!(key_matches(&k, Some("k1"), Some("RS256")));
        assert!(!key_matches(&k, Some("k1"), Some("ES256")));
        assert!(!key_matches(&k, Some("k2"), Some("RS256")));
        assert!(key_matches(&k, None, None));
    }
}
