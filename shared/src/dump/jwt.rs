//! `jwt`: the JWT providers each listener enforces and the keys the proxy really holds —
//! `LISTENER  PROVIDER  ISSUER  AUDIENCES  JWKS  KEYS  FORWARD`. Recognises the placeholder JWKS
//! istiod pushes when it could not fetch a `jwksUri` (every JWT is then rejected).
//!
//! Filters read: `envoy.filters.http.jwt_authn` (providers), and on Istio 1.4-era proxies
//! Istio's own `jwt-auth` (rules) and `istio_authn` (the policy's origins), from `typed_config`
//! or the legacy `config` struct.

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::listeners::{Listener, ListenersDump};
use super::proto_json::{DataSource, decode, decode_bytes, lenient_bool, lenient_string};
use crate::render::{Cell, Tabular, Tone};

/// Envoy's JWT filter.
const JWT_AUTHN: &[&str] = &["envoy.filters.http.jwt_authn"];
/// Istio ≤1.4's own JWT filter.
const ISTIO_JWT_AUTH: &[&str] = &["jwt-auth"];
/// Istio ≤1.4's authentication policy filter.
const ISTIO_AUTHN: &[&str] = &["istio_authn"];

#[derive(Debug, Clone, Default, Deserialize)]
struct JwtAuthentication {
    /// Envoy's filter.
    #[serde(default)]
    providers: std::collections::BTreeMap<String, JwtProvider>,
    /// Istio's `jwt-auth` filter (read only for it).
    #[serde(default)]
    rules: Vec<JwtProvider>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct JwtProvider {
    #[serde(default, deserialize_with = "lenient_string")]
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default, alias = "localJwks")]
    local_jwks: Option<DataSource>,
    #[serde(default, alias = "remoteJwks")]
    remote_jwks: Option<RemoteJwks>,
    #[serde(default, deserialize_with = "lenient_bool")]
    forward: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RemoteJwks {
    #[serde(default, alias = "httpUri")]
    http_uri: Option<HttpUri>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct HttpUri {
    #[serde(default, deserialize_with = "lenient_string")]
    uri: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthnFilterConfig {
    #[serde(default)]
    policy: Option<AuthnPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthnPolicy {
    #[serde(default)]
    origins: Vec<AuthnOrigin>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthnOrigin {
    #[serde(default)]
    jwt: Option<AuthnJwt>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthnJwt {
    #[serde(default, deserialize_with = "lenient_string")]
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default, alias = "jwksUri", deserialize_with = "lenient_string")]
    jwks_uri: String,
    #[serde(default, deserialize_with = "lenient_string")]
    jwks: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Jwks {
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Jwk {
    #[serde(default, deserialize_with = "lenient_string")]
    kid: String,
    #[serde(default, deserialize_with = "lenient_string")]
    alg: String,
    #[serde(default, deserialize_with = "lenient_string")]
    kty: String,
    #[serde(default, deserialize_with = "lenient_string")]
    n: String,
    #[serde(default, deserialize_with = "lenient_string")]
    crv: String,
    #[serde(default, deserialize_with = "lenient_string")]
    k: String,
}

/// One inline key: `kid (alg, kty, bits)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySummary {
    /// Key id (empty when absent).
    pub kid: String,
    /// Algorithm (empty when absent).
    pub alg: String,
    /// Key type.
    pub kty: String,
    /// Key size in bits, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
}

impl std::fmt::Display for KeySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let bits = self
            .bits
            .map(|b| b.to_string())
            .unwrap_or_else(|| "-".into());
        write!(
            f,
            "{} ({}, {}, {})",
            dash(&self.kid),
            dash(&self.alg),
            dash(&self.kty),
            bits
        )
    }
}

/// The placeholder istiod pushes instead of the real keys when it could not fetch a `jwksUri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placeholder {
    /// Which Istio versions push this shape.
    pub istio_versions: String,
    /// The `jwksUri` istiod failed to fetch, when the placeholder encodes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

const FETCH_ERROR_PREFIX: &str = "Error-IstiodFailedToFetchJwksUri-";

/// Recognise istiod's placeholder JWKS (ISTIO.md §4.3) in an inline JWKS text.
pub fn detect_placeholder(inline: &str) -> Option<Placeholder> {
    if inline.trim().is_empty() {
        return Some(Placeholder {
            istio_versions: "≤1.7 (empty JWKS)".into(),
            jwks_uri: None,
        });
    }
    let jwks: Jwks = serde_json::from_str(inline).ok()?;
    jwks.keys.iter().find_map(|k| {
        if let Some(rest) = k.n.strip_prefix(FETCH_ERROR_PREFIX) {
            let uri = decode_bytes(rest).and_then(|b| String::from_utf8(b).ok());
            return Some(Placeholder {
                istio_versions: "1.8–1.14".into(),
                jwks_uri: uri,
            });
        }
        if let Some(decoded) = decode_bytes(&k.n)
            && let Some(uri) = decoded.strip_prefix(FETCH_ERROR_PREFIX.as_bytes())
        {
            return Some(Placeholder {
                istio_versions: "1.15–1.20".into(),
                jwks_uri: String::from_utf8(uri.to_vec()).ok(),
            });
        }
        if k.n.starts_with("vqS7RN4b34i3_5Yy") {
            return Some(Placeholder {
                istio_versions: "1.21–1.29.0 (FakeJwks)".into(),
                jwks_uri: None,
            });
        }
        if k.n.starts_with("0xObjM0UvS_oaazjpEYl") {
            return Some(Placeholder {
                istio_versions: "1.29.1+ (PublicOnlyJwks)".into(),
                jwks_uri: None,
            });
        }
        None
    })
}

/// Summaries of the keys of an inline JWKS (a PEM key shows as one `PEM` entry).
pub fn summarize_keys(inline: &str) -> Vec<KeySummary> {
    if inline.trim_start().starts_with("-----BEGIN") {
        return vec![KeySummary {
            kid: String::new(),
            alg: String::new(),
            kty: "PEM".into(),
            bits: None,
        }];
    }
    let jwks: Jwks = serde_json::from_str(inline).unwrap_or_default();
    jwks.keys
        .iter()
        .map(|k| KeySummary {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            kty: k.kty.clone(),
            bits: key_bits(k),
        })
        .collect()
}

fn key_bits(k: &Jwk) -> Option<u32> {
    let byte_bits = |s: &str| -> Option<u32> {
        let b = decode_bytes(s)?;
        let first = b.iter().position(|x| *x != 0)?;
        let len = u32::try_from(b.len() - first).ok()?;
        Some((len - 1) * 8 + (8 - b[first].leading_zeros()))
    };
    match k.kty.as_str() {
        "RSA" => byte_bits(&k.n),
        "EC" => match k.crv.as_str() {
            "P-256" | "secp256k1" => Some(256),
            "P-384" => Some(384),
            "P-521" => Some(521),
            _ => None,
        },
        "OKP" => match k.crv.as_str() {
            "Ed25519" | "X25519" => Some(256),
            "Ed448" => Some(448),
            "X448" => Some(448),
            _ => None,
        },
        "oct" => decode_bytes(&k.k).and_then(|b| u32::try_from(b.len() * 8).ok()),
        _ => None,
    }
}

/// One JWT provider of one filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRow {
    /// `listener` or `listener/filter-chain`.
    pub listener: String,
    /// The HTTP filter (`envoy.filters.http.jwt_authn`, `jwt-auth`, `istio_authn`).
    pub filter: String,
    /// Provider name (`origins-0`, `rules[0]`, ...).
    pub provider: String,
    /// Issuer.
    pub issuer: String,
    /// Audiences.
    pub audiences: Vec<String>,
    /// `inline`, `file:PATH`, or the remote JWKS URI.
    pub jwks: String,
    /// The inline keys.
    pub keys: Vec<KeySummary>,
    /// Whether the token is forwarded upstream.
    pub forward: bool,
    /// Set when the inline JWKS is istiod's placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<Placeholder>,
}

impl Tabular for JwtRow {
    const KIND: &'static str = "JwtProvider";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "LISTENER",
            "PROVIDER",
            "ISSUER",
            "AUDIENCES",
            "JWKS",
            "KEYS",
            "FORWARD",
        ];
        if wide {
            h.push("FILTER");
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        let keys = match (&self.placeholder, keys.is_empty()) {
            (Some(_), true) => Cell::toned("istiod placeholder (no keys)", Tone::Bad),
            (Some(_), false) => Cell::toned(
                format!("{} [istiod placeholder]", keys.join(", ")),
                Tone::Bad,
            ),
            (None, _) => Cell::or_none(keys.join(", ")),
        };
        let mut r = vec![
            Cell::plain(&self.listener),
            Cell::plain(&self.provider),
            Cell::or_none(&self.issuer),
            Cell::or_none(self.audiences.join(",")),
            Cell::or_none(&self.jwks),
            keys,
            Cell::plain(self.forward.to_string()),
        ];
        if wide {
            r.push(Cell::plain(&self.filter));
        }
        r
    }
}

/// Every JWT provider of every listener filter chain, in listener order.
pub fn jwt_rows(dump: &ListenersDump) -> Vec<JwtRow> {
    let mut rows = Vec::new();
    for l in dump.all() {
        for chain in l.chains() {
            let label = chain_label(l, &chain.name);
            for f in &chain.filters {
                if let Some(hcm) = f.http_connection_manager() {
                    for hf in &hcm.http_filters {
                        rows.extend(filter_rows(&label, hf));
                    }
                }
            }
        }
    }
    rows
}

/// `listener` or `listener/chain`.
pub fn chain_label(l: &Listener, chain: &str) -> String {
    if chain.is_empty() {
        l.name.clone()
    } else {
        format!("{}/{chain}", l.name)
    }
}

fn filter_rows(label: &str, f: &Filter) -> Vec<JwtRow> {
    let Some(config) = f.config() else {
        return vec![];
    };
    // Istio's own filter lists its providers as `rules`; in Envoy's filter `rules` are the
    // per-route requirements.
    let istio_jwt_auth = ISTIO_JWT_AUTH.contains(&f.name.as_str())
        || f.typed_config
            .as_ref()
            .and_then(super::proto_json::any_type)
            .is_some_and(|t| t.contains("istio.envoy.config.filter.http.jwt_auth"));
    if istio_jwt_auth {
        let cfg: JwtAuthentication = decode(config).unwrap_or_default();
        return cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, p)| provider_row(label, &f.name, format!("rules[{i}]"), p))
            .collect();
    }
    if f.is(JWT_AUTHN, "JwtAuthentication") {
        let cfg: JwtAuthentication = decode(config).unwrap_or_default();
        return cfg
            .providers
            .iter()
            .map(|(name, p)| provider_row(label, &f.name, name.clone(), p))
            .collect();
    }
    if f.is(ISTIO_AUTHN, "FilterConfig") {
        let cfg: AuthnFilterConfig = decode(config).unwrap_or_default();
        let origins = cfg.policy.map(|p| p.origins).unwrap_or_default();
        return origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.jwt.as_ref().map(|j| (i, j)))
            .map(|(i, j)| {
                let inline = (!j.jwks.is_empty()).then_some(j.jwks.as_str());
                JwtRow {
                    listener: label.to_string(),
                    filter: f.name.clone(),
                    provider: format!("origins[{i}]"),
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    jwks: if inline.is_some() {
                        "inline".into()
                    } else {
                        j.jwks_uri.clone()
                    },
                    keys: inline.map(summarize_keys).unwrap_or_default(),
                    forward: false,
                    placeholder: inline.and_then(detect_placeholder),
                }
            })
            .collect();
    }
    vec![]
}

fn provider_row(label: &str, filter: &str, provider: String, p: &JwtProvider) -> JwtRow {
    let mut row = JwtRow {
        listener: label.to_string(),
        filter: filter.to_string(),
        provider,
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        jwks: String::new(),
        keys: vec![],
        forward: p.forward,
        placeholder: None,
    };
    if let Some(local) = &p.local_jwks {
        if let Some(file) = local.filename.as_deref().filter(|f| !f.is_empty()) {
            row.jwks = format!("file:{file}");
        } else {
            let text = local
                .inline()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            row.jwks = "inline".into();
            row.keys = summarize_keys(&text);
            row.placeholder = detect_placeholder(&text);
        }
    } else if let Some(uri) = p.remote_jwks.as_ref().and_then(|r| r.http_uri.as_ref()) {
        row.jwks = uri.uri.clone();
    }
    row
}

/// The warning for a placeholder: what happened and what to do.
pub fn placeholder_warning(origin: &str, row: &JwtRow) -> Option<String> {
    let p = row.placeholder.as_ref()?;
    let what = match &p.jwks_uri {
        Some(uri) => format!("istiod could not fetch the JWKS from {uri}"),
        None => "istiod could not fetch the JWKS (its jwksUri is not recorded in this placeholder)"
            .into(),
    };
    Some(format!(
        "{origin}{} provider {} (issuer {}): {what} and pushed its placeholder key (Istio {}); \
         every JWT of this issuer is rejected (\"Jwks doesn't have key to match kid or alg from Jwt\"). \
         Check istiod's trust of the JWKS server with: kubectl jwks-trust check",
        row.listener,
        row.provider,
        if row.issuer.is_empty() {
            "<none>"
        } else {
            &row.issuer
        },
        p.istio_versions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn jwks(n: &str) -> String {
        format!(r#"{{"keys":[{{"e":"AQAB","kid":"abc","kty":"RSA","n":"{n}"}}]}}"#)
    }

    #[test]
    fn key_summaries() {
        let keys = summarize_keys(&format!(
            r#"{{"keys":[{{"kid":"k1","alg":"RS256","kty":"RSA","n":"{RSA_N}","e":"AQAB"}},{{"kty":"EC","crv":"P-256","x":"a","y":"b"}}]}}"#
        ));
        let text: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(text, vec!["k1 (RS256, RSA, 2048)", "- (-, EC, 256)"]);
    }

    #[test]
    fn placeholders_by_istio_version() {
        let uri = "https://keycloak.example.com/certs";
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p =
            detect_placeholder(&jwks(&format!("{FETCH_ERROR_PREFIX}{}", b64.encode(uri)))).unwrap();
        assert_eq!(
            (p.istio_versions.as_str(), p.jwks_uri.as_deref()),
            ("1.8–1.14", Some(uri))
        );
        let p =
            detect_placeholder(&jwks(&b64.encode(format!("{FETCH_ERROR_PREFIX}{uri}")))).unwrap();
        assert_eq!(
            (p.istio_versions.as_str(), p.jwks_uri.as_deref()),
            ("1.15–1.20", Some(uri))
        );
        let p = detect_placeholder(&jwks("vqS7RN4b34i3_5YyZrR")).unwrap();
        assert!(p.istio_versions.starts_with("1.21") && p.jwks_uri.is_none());
        let p = detect_placeholder(&jwks("0xObjM0UvS_oaazjpEYlxyz")).unwrap();
        assert!(p.istio_versions.starts_with("1.29.1"));
        assert!(detect_placeholder("").is_some());
        assert!(detect_placeholder(&jwks(RSA_N)).is_none());
    }

    #[test]
    fn providers_from_current_and_legacy_filters() {
        let dump: ListenersDump = serde_json::from_value(serde_json::json!({
            "dynamic_listeners": [{"name": "virtualInbound", "active_state": {"listener": {
                "name": "virtualInbound",
                "filter_chains": [{"name": "0.0.0.0_9080", "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "http_filters": [{"name": "envoy.filters.http.jwt_authn", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                            "providers": {
                                "origins-1": {"issuer": "b", "remote_jwks": {"http_uri": {"uri": "https://b/jwks"}}},
                                "origins-0": {"issuer": "a", "audiences": ["x", "y"], "forward": true,
                                              "local_jwks": {"inline_string": jwks(RSA_N)}}
                            }}}]}
                }]}]
            }}}],
            "dynamic_active_listeners": [{"listener": {
                "name": "10.0.0.1_9080",
                "filter_chains": [{"filters": [{"name": "envoy.http_connection_manager", "config": {
                    "http_filters": [
                        {"name": "istio_authn", "config": {"policy": {"origins": [{"jwt": {"issuer": "c", "jwks_uri": "https://c/jwks"}}]}}},
                        {"name": "jwt-auth", "config": {"rules": [{"issuer": "c", "local_jwks": {"inline_string": ""}, "forward": true}]}}
                    ]}}]}]
            }}]
        }))
        .unwrap();
        let rows = jwt_rows(&dump);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.row(false)
                    .into_iter()
                    .map(|c| c.text.into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells,
            vec![
                vec![
                    "virtualInbound/0.0.0.0_9080",
                    "origins-0",
                    "a",
                    "x,y",
                    "inline",
                    "abc (-, RSA, 2048)",
                    "true"
                ],
                vec![
                    "virtualInbound/0.0.0.0_9080",
                    "origins-1",
                    "b",
                    "<none>",
                    "https://b/jwks",
                    "<none>",
                    "false"
                ],
                vec![
                    "10.0.0.1_9080",
                    "origins[0]",
                    "c",
                    "<none>",
                    "https://c/jwks",
                    "<none>",
                    "false"
                ],
                vec![
                    "10.0.0.1_9080",
                    "rules[0]",
                    "c",
                    "<none>",
                    "inline",
                    "istiod placeholder (no keys)",
                    "true"
                ],
            ]
        );
        let w = placeholder_warning("", &rows[3]).unwrap();
        assert!(w.contains("kubectl jwks-trust check"), "{w}");
        assert!(placeholder_warning("", &rows[0]).is_none());
    }

    #[test]
    fn captured_envoy_dump() {
        let d =
            crate::dump::ConfigDump::from_slice(&crate::dump::fixture::capture("config_dump.json"))
                .unwrap();
        let rows = jwt_rows(d.listeners().unwrap());
        let text: Vec<String> = rows
            .iter()
            .map(|r| {
                r.row(false)
                    .into_iter()
                    .map(|c| c.text)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        assert_eq!(
            text,
            vec![
                "virtualInbound/0.0.0.0_9080 | origins-0 | https://keycloak.example.com/realms/olaf | customer,account | inline | k1 (RS256, RSA, 2048) | true",
                "virtualInbound/0.0.0.0_9080 | origins-1 | https://legacy.example.com | <none> | inline | abc (-, RSA, 823) [istiod placeholder] | false",
                "virtualInbound/0.0.0.0_9080 | origins-2 | https://remote.example.com | <none> | https://keycloak.example.com/certs | <none> | false",
            ]
        );
        let p = rows[1].placeholder.as_ref().unwrap();
        assert_eq!(
            p.jwks_uri.as_deref(),
            Some("https://keycloak.example.com/realms/olaf/protocol/openid-connect/certs")
        );
    }
}
