//! JWKS (RFC 7517), JWT (RFC 7519) header/claims and OIDC discovery documents.
//!
//! Decoding a JWT here never verifies its signature: the point is to say why a sidecar would
//! reject it (issuer, kid, expiry, audience), not to trust it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Error;

/// A JSON Web Key Set: `{"keys": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, in document order.
    pub keys: Vec<Jwk>,
}

/// One key, by `kty`. Unknown key types are kept as [`Jwk::Other`] so a set with a new key type
/// still parses.
#[derive(Debug, Clone, PartialEq)]
pub enum Jwk {
    /// `kty: RSA`.
    Rsa(RsaKey),
    /// `kty: EC`.
    Ec(EcKey),
    /// `kty: OKP` (Ed25519 …).
    Okp(OkpKey),
    /// Any other `kty` (e.g. `oct`).
    Other(OtherKey),
}

/// An RSA public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RsaKey {
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, e.g. `RS256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `use`, e.g. `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
}

/// An elliptic-curve public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcKey {
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, e.g. `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `use`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Curve, e.g. `P-256`.
    pub crv: String,
    /// X coordinate, base64url.
    pub x: String,
    /// Y coordinate, base64url.
    pub y: String,
}

/// An octet key pair (RFC 8037).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkpKey {
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, e.g. `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `use`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Curve, e.g. `Ed25519`.
    pub crv: String,
    /// Public key, base64url.
    pub x: String,
}

/// A key of a type we don't model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherKey {
    /// Its `kty`.
    pub kty: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kty")]
enum Tagged {
    #[serde(rename = "RSA")]
    Rsa(RsaKey),
    #[serde(rename = "EC")]
    Ec(EcKey),
    #[serde(rename = "OKP")]
    Okp(OkpKey),
}

impl<'de> Deserialize<'de> for Jwk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        let kty = v
            .get("kty")
            .and_then(|k| k.as_str())
            .ok_or_else(|| D::Error::custom("key without a \"kty\" string"))?;
        match kty {
            "RSA" | "EC" | "OKP" => {
                let t: Tagged = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(match t {
                    Tagged::Rsa(k) => Jwk::Rsa(k),
                    Tagged::Ec(k) => Jwk::Ec(k),
                    Tagged::Okp(k) => Jwk::Okp(k),
                })
            }
            _ => serde_json::from_value(v)
                .map(Jwk::Other)
                .map_err(D::Error::custom),
        }
    }
}

impl Serialize for Jwk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Jwk::Rsa(k) => Tagged::Rsa(k.clone()).serialize(s),
            Jwk::Ec(k) => Tagged::Ec(k.clone()).serialize(s),
            Jwk::Okp(k) => Tagged::Okp(k.clone()).serialize(s),
            Jwk::Other(k) => k.serialize(s),
        }
    }
}

impl Jwk {
    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        match self {
            Jwk::Rsa(k) => k.kid.as_deref(),
            Jwk::Ec(k) => k.kid.as_deref(),
            Jwk::Okp(k) => k.kid.as_deref(),
            Jwk::Other(k) => k.kid.as_deref(),
        }
    }

    /// The algorithm, if any.
    pub fn alg(&self) -> Option<&str> {
        match self {
            Jwk::Rsa(k) => k.alg.as_deref(),
            Jwk::Ec(k) => k.alg.as_deref(),
            Jwk::Okp(k) => k.alg.as_deref(),
            Jwk::Other(k) => k.alg.as_deref(),
        }
    }

    /// The key type: `RSA`, `EC`, `OKP` or whatever else it said.
    pub fn kty(&self) -> &str {
        match self {
            Jwk::Rsa(_) => "RSA",
            Jwk::Ec(_) => "EC",
            Jwk::Okp(_) => "OKP",
            Jwk::Other(k) => &k.kty,
        }
    }
}

impl Jwks {
    /// Parse a JWKS document. Errors are serde's (the caller names the source).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The kids of the keys, in document order (keys without a kid are left out).
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(Jwk::kid).collect()
    }
}

/// The part of an OIDC discovery document (`/.well-known/openid-configuration`) istiod reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIdConfiguration {
    /// `issuer`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: String,
}

/// A decoded (not verified) JWT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Jwt {
    /// The JOSE header.
    pub header: JwtHeader,
    /// The claims.
    pub claims: Claims,
    /// Whether a signature part is present (it is never checked here).
    pub signed: bool,
}

/// The JOSE header of a JWT.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JwtHeader {
    /// `alg`.
    #[serde(default)]
    pub alg: Option<String>,
    /// `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `typ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// The registered claims we look at; the others are kept by name for display.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Claims {
    /// `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `aud`: a string or a list.
    #[serde(default, skip_serializing_if = "Audience::is_empty")]
    pub aud: Audience,
    /// `exp`, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `nbf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Every other claim.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `aud`: one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// No `aud` claim.
    #[default]
    None,
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// True when there is no audience.
    pub fn is_empty(&self) -> bool {
        match self {
            Audience::None => true,
            Audience::One(_) => false,
            Audience::Many(v) => v.is_empty(),
        }
    }

    /// The audiences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::None => vec![],
            Audience::One(a) => vec![a.clone()],
            Audience::Many(v) => v.clone(),
        }
    }
}

/// Decode base64url with or without padding.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Encode base64url without padding.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Jwt {
    /// Decode `header.payload[.signature]`. A leading `Bearer ` and surrounding whitespace are
    /// ignored. The token itself never appears in errors.
    pub fn decode(token: &str) -> Result<Self, Error> {
        let t = token.trim();
        let t = t
            .strip_prefix("Bearer ")
            .or_else(|| t.strip_prefix("bearer "))
            .unwrap_or(t)
            .trim();
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() != 3 && parts.len() != 2 {
            return Err(Error::TokenFormat { parts: parts.len() });
        }
        let header: JwtHeader = decode_part(parts[0], "header")?;
        let claims: Claims = decode_part(parts[1], "payload")?;
        Ok(Jwt {
            header,
            claims,
            signed: parts.get(2).is_some_and(|s| !s.is_empty()),
        })
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, Error> {
    let bytes = b64url_decode(part).ok_or(Error::TokenBase64 { part: what })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::TokenJson { part: what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"{"keys":[
        {"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"AQAB-n","e":"AQAB","x5c":["..."]},
        {"kty":"EC","kid":"k2","crv":"P-256","x":"xx","y":"yy"},
        {"kty":"OKP","crv":"Ed25519","x":"okp"},
        {"kty":"oct","kid":"sym","k":"secret"}
    ]}"#;

    #[test]
    fn jwks_parses_every_key_type() {
        let j = Jwks::parse(SET.as_bytes()).unwrap();
        assert_eq!(j.keys.len(), 4);
        assert!(
            matches!(&j.keys[0], Jwk::Rsa(k) if k.n == "AQAB-n" && k.use_.as_deref() == Some("sig"))
        );
        assert!(matches!(&j.keys[1], Jwk::Ec(k) if k.crv == "P-256"));
        assert!(matches!(&j.keys[2], Jwk::Okp(k) if k.x == "okp"));
        assert!(matches!(&j.keys[3], Jwk::Other(k) if k.kty == "oct"));
        assert_eq!(j.kids(), vec!["k1", "k2", "sym"]);
        assert_eq!(j.keys[3].kty(), "oct");
        // The secret of an unknown key type is not kept, so it can never be printed.
        let out = serde_json::to_string(&j).unwrap();
        assert!(!out.contains("secret"), "{out}");
        assert!(out.contains(r#""kty":"RSA""#));
    }

    #[test]
    fn jwks_errors() {
        assert!(Jwks::parse(b"<html>").is_err());
        assert!(Jwks::parse(br#"{"keys":[{"kid":"x"}]}"#).is_err());
        assert!(Jwks::parse(br#"{"keys":[{"kty":"RSA","kid":"x"}]}"#).is_err());
        assert!(Jwks::parse(br#"{"issuer":"x"}"#).is_err());
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes())
        )
    }

    #[test]
    fn jwt_decodes_header_and_claims() {
        let t = token(
            r#"{"alg":"ES256","kid":"olaf-1","typ":"JWT"}"#,
            r#"{"iss":"https://sso/realms/olaf","sub":"u1","aud":["a","b"],"exp":100,"azp":"web"}"#,
        );
        let j = Jwt::decode(&format!("Bearer {t}\n")).unwrap();
        assert_eq!(j.header.kid.as_deref(), Some("olaf-1"));
        assert_eq!(j.claims.iss.as_deref(), Some("https://sso/realms/olaf"));
        assert_eq!(j.claims.aud.to_vec(), vec!["a", "b"]);
        assert_eq!(j.claims.exp, Some(100));
        assert_eq!(j.claims.other["azp"], "web");
        assert!(j.signed);
        let one = Jwt::decode(&token(r#"{"alg":"RS256"}"#, r#"{"aud":"x"}"#)).unwrap();
        assert_eq!(one.claims.aud, Audience::One("x".into()));
    }

    #[test]
    fn jwt_errors_do_not_echo_the_token() {
        let e = Jwt::decode("abc").unwrap_err();
        assert!(matches!(e, Error::TokenFormat { parts: 1 }));
        let e = Jwt::decode("e30.!!!.x").unwrap_err();
        assert!(matches!(e, Error::TokenBase64 { part: "payload" }));
        let e = Jwt::decode(&token("{", "{}")).unwrap_err();
        assert!(matches!(e, Error::TokenJson { part: "header", .. }));
        assert!(!e.to_string().contains("e30"));
    }

    #[test]
    fn openid_configuration() {
        let c: OpenIdConfiguration =
            serde_json::from_str(r#"{"issuer":"i","jwks_uri":"https://x/certs","other":1}"#)
                .unwrap();
        assert_eq!(c.jwks_uri, "https://x/certs");
    }
}
