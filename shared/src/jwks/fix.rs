//! Fix 1 as pure functions on a policy object: replace a rule's `jwksUri` by `jwks`,
//! recording where and when the keys came from; and the YAML diff `--dry-run` shows.
//! (Fix 2, the CA bundle of istiod, is in `cacerts`; the cluster writes in `istiod` and
//! `policy`.)

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Error;
use super::policy::PolicyKind;

/// Annotation: the URI the inlined keys were fetched from (a JSON object issuer → URI when a
/// policy has several inlined rules).
pub const SOURCE_ANNOTATION: &str = "meshdebug.io/jwks-source";
/// Annotation: when the inlined keys were fetched (RFC 3339).
pub const FETCHED_AT_ANNOTATION: &str = "meshdebug.io/jwks-fetched-at";
/// The sources recorded in [`SOURCE_ANNOTATION`], by issuer (`*` = the policy's one inlined rule).
pub fn parse_sources(value: &str) -> BTreeMap<String, String> {
    let v = value.trim();
    if v.starts_with('{') {
        serde_json::from_str(v).unwrap_or_default()
    } else if v.is_empty() {
        BTreeMap::new()
    } else {
        [("*".to_string(), v.to_string())].into()
    }
}

fn format_sources(m: &BTreeMap<String, String>) -> String {
    match m.len() {
        1 => m.values().next().cloned().unwrap_or_default(),
        _ => serde_json::to_string(m).unwrap_or_default(),
    }
}

/// Replace `jwksUri` by `jwks` in rule `index` of a policy object, and record the source URI and
/// the fetch time in annotations. Fails if the rule is not there.
pub fn inline_rule(
    object: &Value,
    kind: PolicyKind,
    index: usize,
    jwks: &str,
    source_uri: &str,
    fetched_at: &str,
) -> Result<Value, Error> {
    let mut out = object.clone();
    let pointer = kind.rule_pointer(index);
    let issuer = out
        .pointer(&format!("{pointer}/issuer"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    // Rules already inline (before this change), to name a plain-form source when the map grows.
    let other_inline: Vec<String> = rule_objects(&out, kind)
        .into_iter()
        .filter(|(i, r)| *i != index && r.get("jwks").is_some())
        .map(|(_, r)| {
            r.get("issuer")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let Some(rule) = out.pointer_mut(&pointer).and_then(|r| r.as_object_mut()) else {
        return Err(Error::NothingToInline {
            policy: object_id(object, kind),
            issuer: None,
        });
    };
    rule.remove("jwksUri");
    rule.remove("jwks_uri");
    rule.insert("jwks".into(), Value::String(jwks.to_string()));

    let meta = out
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    let Some(meta) = meta.and_then(|m| m.as_object_mut()) else {
        return Ok(out);
    };
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    if let Some(ann) = ann.as_object_mut() {
        let mut sources = ann
            .get(SOURCE_ANNOTATION)
            .and_then(|v| v.as_str())
            .map(parse_sources)
            .unwrap_or_default();
        // A plain (issuer-less) source belongs to the one rule that was inline before: this
        // rule when no other is inline (a refresh), else the other one.
        if let Some(plain) = sources.remove("*") {
            match other_inline.as_slice() {
                [] => {}
                [one] if *one != issuer => {
                    sources.insert(one.clone(), plain);
                }
                _ => {
                    sources.insert("*".to_string(), plain);
                }
            }
        }
        sources.insert(issuer, source_uri.to_string());
        ann.insert(
            SOURCE_ANNOTATION.into(),
            Value::String(format_sources(&sources)),
        );
        ann.insert(
            FETCHED_AT_ANNOTATION.into(),
            Value::String(fetched_at.to_string()),
        );
    }
    Ok(out)
}

fn rule_objects(object: &Value, kind: PolicyKind) -> Vec<(usize, &serde_json::Map<String, Value>)> {
    let list = match kind {
        PolicyKind::RequestAuthentication => object.pointer("/spec/jwtRules"),
        PolicyKind::Policy | PolicyKind::MeshPolicy => object.pointer("/spec/origins"),
    };
    list.and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let r = match kind {
                        PolicyKind::RequestAuthentication => r,
                        _ => r.get("jwt")?,
                    };
                    r.as_object().map(|o| (i, o))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn object_id(object: &Value, kind: PolicyKind) -> String {
    let s = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    format!("{} {}/{}", kind.as_str(), s("namespace"), s("name"))
}

/// A unified diff of two objects as YAML (for `--dry-run`), empty when equal.
pub fn yaml_diff(before: &Value, after: &Value, label: &str) -> String {
    let a = serde_saphyr::to_string(&strip_noise(before)).unwrap_or_default();
    let b = serde_saphyr::to_string(&strip_noise(after)).unwrap_or_default();
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{label} (cluster)"), &format!("{label} (after)"))
        .to_string()
}

fn strip_noise(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
        m.remove("managedFields");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra() -> Value {
        json!({
            "apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt-olaf", "namespace": "olaf", "resourceVersion": "41"},
            "spec": {"selector": {"matchLabels": {"app": "customer"}},
                     "jwtRules": [
                        {"issuer": "https://sso/realms/olaf", "jwksUri": "https://sso/certs", "forwardOriginalToken": true},
                        {"issuer": "https://other", "jwksUri": "https://other/certs"}
                     ]}
        })
    }

    #[test]
    fn inline_request_authentication_rule() {
        let keys = r#"{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","x":"a","y":"b"}]}"#;
        let out = inline_rule(
            &ra(),
            PolicyKind::RequestAuthentication,
            0,
            keys,
            "https://sso/certs",
            "2026-01-02T03:04:05Z",
        )
        .unwrap();
        let rule = &out["spec"]["jwtRules"][0];
        assert!(rule.get("jwksUri").is_none());
        assert_eq!(rule["jwks"], keys);
        assert_eq!(rule["forwardOriginalToken"], true);
        assert_eq!(out["spec"]["jwtRules"][1]["jwksUri"], "https://other/certs");
        assert_eq!(
            out["metadata"]["annotations"][SOURCE_ANNOTATION],
            "https://sso/certs"
        );
        assert_eq!(
            out["metadata"]["annotations"][FETCHED_AT_ANNOTATION],
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            out["metadata"]["resourceVersion"], "41",
            "kept for the replace"
        );
        // Inlining the second rule too turns the source into a map by issuer.
        let both = inline_rule(
            &out,
            PolicyKind::RequestAuthentication,
            1,
            keys,
            "https://other/certs",
            "t2",
        )
        .unwrap();
        let src = parse_sources(
            both["metadata"]["annotations"][SOURCE_ANNOTATION]
                .as_str()
                .unwrap(),
        );
        assert_eq!(src["https://sso/realms/olaf"], "https://sso/certs");
        assert_eq!(src["https://other"], "https://other/certs");
        // Re-inlining (refresh) keeps the plain form.
        let again = inline_rule(
            &out,
            PolicyKind::RequestAuthentication,
            0,
            keys,
            "https://sso/certs",
            "t3",
        )
        .unwrap();
        assert_eq!(
            again["metadata"]["annotations"][SOURCE_ANNOTATION],
            "https://sso/certs"
        );
        // The diff shows the change.
        let d = yaml_diff(&ra(), &out, "requestauthentication olaf/jwt-olaf");
        assert!(d.contains("-    jwksUri: https://sso/certs"), "{d}");
        assert!(d.contains("+    jwks: "), "{d}");
        assert!(yaml_diff(&out, &out, "x").is_empty());
        assert!(inline_rule(&ra(), PolicyKind::RequestAuthentication, 5, keys, "u", "t").is_err());
    }

    #[test]
    fn inline_legacy_policy_rule() {
        let p = json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
            "metadata": {"name": "default", "namespace": "olaf", "annotations": {"keep": "me"}},
            "spec": {"origins": [{"jwt": {"issuer": "i", "jwksUri": "https://u", "jwtHeaders": ["x-jwt"]}}],
                     "principalBinding": "USE_ORIGIN"}
        });
        let out =
            inline_rule(&p, PolicyKind::Policy, 0, "{\"keys\":[]}", "https://u", "t").unwrap();
        let jwt = &out["spec"]["origins"][0]["jwt"];
        assert!(jwt.get("jwksUri").is_none());
        assert_eq!(jwt["jwks"], "{\"keys\":[]}");
        assert_eq!(jwt["jwtHeaders"][0], "x-jwt");
        assert_eq!(out["metadata"]["annotations"]["keep"], "me");
        assert_eq!(
            out["metadata"]["annotations"][SOURCE_ANNOTATION],
            "https://u"
        );
    }
}
