//! The jwt_authn providers of a sidecar, read from its `/config_dump`.
//!
//! Deliberately minimal (the full config_dump model is the `dump` module's): every
//! `JwtAuthentication` filter config is found by its `@type` wherever it sits (listeners, ECDS),
//! as are pre-`typed_config` filters named `envoy.filters.http.jwt_authn` / `jwt-auth` with a
//! `config` struct; only the providers are parsed.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::trust::{HeldKeys, ProviderKeys};

#[derive(Debug, Deserialize)]
struct JwtAuthentication {
    #[serde(default)]
    providers: BTreeMap<String, Provider>,
}

#[derive(Debug, Deserialize)]
struct Provider {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default, alias = "localJwks")]
    local_jwks: Option<DataSource>,
    #[serde(default, alias = "remoteJwks")]
    remote_jwks: Option<RemoteJwks>,
}

#[derive(Debug, Deserialize)]
struct DataSource {
    #[serde(default, alias = "inlineString")]
    inline_string: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RemoteJwks {
    #[serde(default, alias = "httpUri")]
    http_uri: Option<HttpUri>,
}

#[derive(Debug, Deserialize)]
struct HttpUri {
    #[serde(default)]
    uri: String,
}

const FILTER_NAMES: &[&str] = &[
    "envoy.filters.http.jwt_authn",
    "jwt-auth",
    "envoy.jwt_authn",
];

/// Every distinct jwt_authn provider in a config_dump (sorted by issuer, then name). The same
/// provider repeats on every listener; it is listed once per distinct key source.
pub fn providers_in_config_dump(dump: &serde_json::Value) -> Vec<ProviderKeys> {
    let mut found = Vec::new();
    walk(dump, &mut found);
    let mut out: Vec<ProviderKeys> = Vec::new();
    for p in found {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort_by(|a, b| (&a.issuer, &a.name).cmp(&(&b.issuer, &b.name)));
    out
}

fn walk(v: &serde_json::Value, out: &mut Vec<ProviderKeys>) {
    match v {
        serde_json::Value::Object(m) => {
            let is_config = m
                .get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with(".JwtAuthentication"));
            if is_config {
                collect(v, out);
                return;
            }
            let legacy_filter = m
                .get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| FILTER_NAMES.contains(&n));
            if legacy_filter && let Some(c) = m.get("config") {
                collect(c, out);
            }
            for child in m.values() {
                walk(child, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
        _ => {}
    }
}

fn collect(config: &serde_json::Value, out: &mut Vec<ProviderKeys>) {
    let Ok(cfg) = JwtAuthentication::deserialize(config) else {
        tracing::debug!("skipping a jwt_authn config that does not parse");
        return;
    };
    for (name, p) in cfg.providers {
        let inline = p
            .local_jwks
            .as_ref()
            .map(|l| l.inline_string.as_deref().unwrap_or(""));
        let remote = p
            .remote_jwks
            .as_ref()
            .and_then(|r| r.http_uri.as_ref())
            .map(|h| h.uri.as_str());
        out.push(ProviderKeys {
            name,
            issuer: p.issuer,
            audiences: p.audiences,
            keys: HeldKeys::classify(inline, remote),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::trust::Placeholder;

    #[test]
    fn finds_providers_in_listeners_once() {
        let hcm_filter = serde_json::json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {
                    "origins-0": {
                        "issuer": "https://sso/realms/olaf",
                        "audiences": ["web"],
                        "local_jwks": {"inline_string": "{\"keys\":[{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"0xObjM0UvS_oaazjpEYl\"}]}"},
                        "payload_in_metadata": "https://sso/realms/olaf"
                    },
                    "origins-1": {
                        "issuer": "https://remote",
                        "remoteJwks": {"httpUri": {"uri": "https://remote/certs", "cluster": "x"}}
                    }
                }
            }
        });
        let dump = serde_json::json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "dynamic_listeners": [
                {"name": "a", "active_state": {"listener": {"filter_chains": [{"filters": [{"typed_config": {"http_filters": [hcm_filter.clone()]}}]}]}}},
                {"name": "b", "active_state": {"listener": {"filter_chains": [{"filters": [{"typed_config": {"http_filters": [hcm_filter]}}]}]}}}
             ]}
        ]});
        let ps = providers_in_config_dump(&dump);
        assert_eq!(ps.len(), 2, "{ps:#?}");
        assert_eq!(ps[0].issuer, "https://remote");
        assert_eq!(
            ps[0].keys,
            HeldKeys::Remote {
                uri: "https://remote/certs".into()
            }
        );
        assert_eq!(ps[1].audiences, vec!["web"]);
        assert_eq!(
            ps[1].keys,
            HeldKeys::Placeholder {
                placeholder: Placeholder::PublicOnlyJwks
            }
        );
    }

    #[test]
    fn legacy_struct_config() {
        let dump = serde_json::json!({"configs": [{"dynamic_active_listeners": [{"listener": {"filter_chains": [{"filters": [{"config": {"http_filters": [
            {"name": "jwt-auth", "config": {"providers": {"origins-0": {"issuer": "i", "local_jwks": {"inline_string": ""}}}}}
        ]}}]}]}}]}]});
        let ps = providers_in_config_dump(&dump);
        assert_eq!(ps.len(), 1);
        assert_eq!(
            ps[0].keys,
            HeldKeys::Placeholder {
                placeholder: Placeholder::Empty
            }
        );
    }
}
