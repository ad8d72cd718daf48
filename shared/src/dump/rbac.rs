//! `rbac`: the RBAC policies each listener enforces (Istio's AuthorizationPolicies as Envoy
//! holds them) — `LISTENER  ACTION  POLICY  PERMISSIONS  PRINCIPALS  SHADOW`, from the HTTP filter
//! `envoy.filters.http.rbac` and the network filter `envoy.filters.network.rbac`, their `rules`
//! and `shadow_rules` (dry-run). `-o json` carries each policy in full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::filter::Filter;
use super::jwt::chain_label;
use super::listeners::ListenersDump;
use super::proto_json::{decode, lenient_string};
use crate::render::{Cell, Tabular, Tone};

const HTTP_RBAC: &[&str] = &["envoy.filters.http.rbac"];
const NETWORK_RBAC: &[&str] = &["envoy.filters.network.rbac"];

#[derive(Debug, Clone, Default, Deserialize)]
struct RbacFilter {
    #[serde(default)]
    rules: Option<Rbac>,
    #[serde(default, alias = "shadowRules")]
    shadow_rules: Option<Rbac>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Rbac {
    #[serde(default, deserialize_with = "lenient_string")]
    action: String,
    #[serde(default)]
    policies: BTreeMap<String, Policy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Policy {
    #[serde(default)]
    permissions: Vec<Value>,
    #[serde(default)]
    principals: Vec<Value>,
}

/// One RBAC policy of one filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RbacRow {
    /// `listener` or `listener/filter-chain`.
    pub listener: String,
    /// `http` or `network`.
    pub filter: String,
    /// `ALLOW`, `DENY` or `LOG`.
    pub action: String,
    /// Policy name (Istio: `ns[NS]-policy[NAME]-rule[N]`); empty when the rules have no policy.
    pub policy: String,
    /// One summary per permission (any of them matches).
    pub permissions: Vec<String>,
    /// One summary per principal (any of them matches).
    pub principals: Vec<String>,
    /// From `shadow_rules` (dry run: logged, not enforced).
    pub shadow: bool,
    /// The policy as Envoy holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Value>,
}

impl Tabular for RbacRow {
    const KIND: &'static str = "RbacPolicy";
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "LISTENER",
            "ACTION",
            "POLICY",
            "PERMISSIONS",
            "PRINCIPALS",
            "SHADOW",
        ];
        if wide {
            h.push("FILTER");
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<Cell<'_>> {
        let tone = match self.action.as_str() {
            "DENY" => Tone::Bad,
            "ALLOW" => Tone::Good,
            _ => Tone::Plain,
        };
        let policy = if self.policy.is_empty() {
            Cell::toned(
                match self.action.as_str() {
                    "ALLOW" => "<none> (nothing is allowed)",
                    "DENY" => "<none> (nothing is denied)",
                    _ => "<none>",
                },
                Tone::Warn,
            )
        } else {
            Cell::plain(&self.policy)
        };
        let mut r = vec![
            Cell::plain(&self.listener),
            Cell::toned(&self.action, tone),
            policy,
            Cell::or_none(self.permissions.join(" OR ")),
            Cell::or_none(self.principals.join(" OR ")),
            Cell::plain(self.shadow.to_string()),
        ];
        if wide {
            r.push(Cell::plain(&self.filter));
        }
        r
    }
}

/// Every RBAC policy of every listener filter chain: network filters first, then the HTTP
/// filters of each connection manager; policies by name.
pub fn rbac_rows(dump: &ListenersDump) -> Vec<RbacRow> {
    let mut rows = Vec::new();
    for l in dump.all() {
        for chain in l.chains() {
            let label = chain_label(l, &chain.name);
            for f in &chain.filters {
                // Only network filters sit in a chain, so any RBAC config here is the network one.
                if f.is(NETWORK_RBAC, "RBAC") {
                    rows.extend(filter_rows(&label, "network", f));
                }
                if let Some(hcm) = f.http_connection_manager() {
                    for hf in &hcm.http_filters {
                        if hf.is(HTTP_RBAC, "RBAC") {
                            rows.extend(filter_rows(&label, "http", hf));
                        }
                    }
                }
            }
        }
    }
    rows
}

fn filter_rows(label: &str, kind: &str, f: &Filter) -> Vec<RbacRow> {
    let Some(config) = f.config() else {
        return vec![];
    };
    let cfg: RbacFilter = decode(config).unwrap_or_default();
    let raw = |shadow: bool, name: &str| {
        let key = if shadow { "shadow_rules" } else { "rules" };
        let camel = if shadow { "shadowRules" } else { "rules" };
        config
            .get(key)
            .or_else(|| config.get(camel))
            .and_then(|r| r.get("policies"))
            .and_then(|p| p.get(name))
            .cloned()
    };
    let mut rows = Vec::new();
    for (shadow, rules) in [(false, &cfg.rules), (true, &cfg.shadow_rules)] {
        let Some(rules) = rules else { continue };
        let action = if rules.action.is_empty() {
            "ALLOW".to_string()
        } else {
            rules.action.clone()
        };
        let row = |policy: &str, p: Option<&Policy>| RbacRow {
            listener: label.to_string(),
            filter: kind.to_string(),
            action: action.clone(),
            policy: policy.to_string(),
            permissions: p
                .map(|p| p.permissions.iter().map(summarize).collect())
                .unwrap_or_default(),
            principals: p
                .map(|p| p.principals.iter().map(summarize).collect())
                .unwrap_or_default(),
            shadow,
            rules: raw(shadow, policy),
        };
        if rules.policies.is_empty() {
            rows.push(row("", None));
        }
        for (name, p) in &rules.policies {
            rows.push(row(name, Some(p)));
        }
    }
    rows
}

/// The value of `snake` (or its camelCase spelling) in an object.
fn field<'a>(v: &'a Value, snake: &str) -> Option<&'a Value> {
    v.get(snake).or_else(|| {
        let mut camel = String::with_capacity(snake.len());
        let mut up = false;
        for c in snake.chars() {
            if c == '_' {
                up = true;
            } else if up {
                camel.extend(c.to_uppercase());
                up = false;
            } else {
                camel.push(c);
            }
        }
        v.get(camel)
    })
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `type.matcher.v3.StringMatcher`: `=v`, `=v*`, `=*v`, ` contains v`, `~re`.
fn string_matcher(m: &Value) -> String {
    let ignore_case = field(m, "ignore_case").and_then(Value::as_bool) == Some(true);
    let s = if let Some(x) = field(m, "exact") {
        format!("={}", text(Some(x)))
    } else if let Some(x) = field(m, "prefix") {
        format!("={}*", text(Some(x)))
    } else if let Some(x) = field(m, "suffix") {
        format!("=*{}", text(Some(x)))
    } else if let Some(x) = field(m, "contains") {
        format!(" contains {}", text(Some(x)))
    } else if let Some(x) = field(m, "safe_regex") {
        format!("~{}", text(field(x, "regex")))
    } else {
        format!(" {m}")
    };
    if ignore_case {
        format!("{s} (ignore case)")
    } else {
        s
    }
}

fn header_matcher(h: &Value) -> String {
    let name = text(field(h, "name"));
    let invert = field(h, "invert_match").and_then(Value::as_bool) == Some(true);
    let m = if let Some(x) = field(h, "exact_match") {
        format!("={}", text(Some(x)))
    } else if let Some(x) = field(h, "prefix_match") {
        format!("={}*", text(Some(x)))
    } else if let Some(x) = field(h, "suffix_match") {
        format!("=*{}", text(Some(x)))
    } else if let Some(x) = field(h, "contains_match") {
        format!(" contains {}", text(Some(x)))
    } else if let Some(x) = field(h, "safe_regex_match") {
        format!("~{}", text(field(x, "regex")))
    } else if field(h, "present_match").is_some() {
        " present".into()
    } else if let Some(x) = field(h, "string_match") {
        string_matcher(x)
    } else {
        String::new()
    };
    if invert {
        format!("NOT {name}{m}")
    } else {
        format!("{name}{m}")
    }
}

fn cidr(v: &Value) -> String {
    format!(
        "{}/{}",
        text(field(v, "address_prefix")),
        field(v, "prefix_len")
            .map(|p| text(Some(p)))
            .unwrap_or_else(|| "0".into())
    )
}

fn join(items: Option<&Value>, op: &str) -> String {
    let parts: Vec<String> = items
        .and_then(Value::as_array)
        .map(|a| a.iter().map(summarize).collect())
        .unwrap_or_default();
    match parts.as_slice() {
        [] => "(none)".into(),
        [one] => one.clone(),
        _ => format!("({})", parts.join(op)),
    }
}

/// One line for a `Permission` or `Principal` (their oneofs share the shapes that matter).
pub fn summarize(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return v.to_string();
    };
    if field(v, "any").and_then(Value::as_bool) == Some(true) {
        return "any".into();
    }
    if let Some(x) = field(v, "and_rules").or_else(|| field(v, "and_ids")) {
        return join(field(x, "rules").or_else(|| field(x, "ids")), " AND ");
    }
    if let Some(x) = field(v, "or_rules").or_else(|| field(v, "or_ids")) {
        return join(field(x, "rules").or_else(|| field(x, "ids")), " OR ");
    }
    if let Some(x) = field(v, "not_rule").or_else(|| field(v, "not_id")) {
        return format!("NOT {}", summarize(x));
    }
    if let Some(x) = field(v, "header") {
        return header_matcher(x);
    }
    if let Some(x) = field(v, "url_path") {
        return format!(
            "path{}",
            field(x, "path").map(string_matcher).unwrap_or_default()
        );
    }
    if let Some(x) = field(v, "destination_port") {
        return format!("port {}", text(Some(x)));
    }
    if let Some(x) = field(v, "destination_port_range") {
        return format!(
            "ports {}-{}",
            text(field(x, "start")),
            text(field(x, "end"))
        );
    }
    if let Some(x) = field(v, "destination_ip") {
        return format!("dst {}", cidr(x));
    }
    if let Some(x) = field(v, "requested_server_name") {
        return format!("sni{}", string_matcher(x));
    }
    if let Some(x) = field(v, "authenticated") {
        return match field(x, "principal_name") {
            Some(m) => format!("principal{}", string_matcher(m)),
            None => "authenticated".into(),
        };
    }
    for (key, label) in [
        ("source_ip", "src"),
        ("direct_remote_ip", "direct remote"),
        ("remote_ip", "remote"),
    ] {
        if let Some(x) = field(v, key) {
            return format!("{label} {}", cidr(x));
        }
    }
    if let Some(x) = field(v, "metadata") {
        let path: Vec<String> = field(x, "path")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|s| text(field(s, "key"))).collect())
            .unwrap_or_default();
        let value = field(x, "value")
            .and_then(|m| field(m, "string_match"))
            .map(string_matcher)
            .unwrap_or_default();
        return format!(
            "metadata {}.{}{value}",
            text(field(x, "filter")),
            path.join(".")
        );
    }
    // Anything else: the oneof's name and its value, compact.
    match obj.iter().next() {
        Some((k, x)) => format!("{k} {x}"),
        None => "{}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_shaped_policies() {
        let p = serde_json::json!({"and_rules": {"rules": [{"or_rules": {"rules": [
            {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
            {"header": {"name": ":method", "exact_match": "HEAD"}}
        ]}}, {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/api/"}}}]}}]}});
        assert_eq!(
            summarize(&p),
            "((:method=GET OR :method=HEAD) AND path=/api/*)"
        );
        let id = serde_json::json!({"andIds": {"ids": [{"orIds": {"ids": [
            {"authenticated": {"principalName": {"exact": "spiffe://cluster.local/ns/a/sa/b"}}}]}}]}});
        assert_eq!(summarize(&id), "principal=spiffe://cluster.local/ns/a/sa/b");
        assert_eq!(
            summarize(&serde_json::json!({"not_id": {"any": true}})),
            "NOT any"
        );
        assert_eq!(
            summarize(
                &serde_json::json!({"source_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}})
            ),
            "src 10.0.0.0/8"
        );
        assert_eq!(
            summarize(
                &serde_json::json!({"metadata": {"filter": "istio_authn", "path": [{"key": "source.principal"}], "value": {"string_match": {"suffix": "/sa/x"}}}})
            ),
            "metadata istio_authn.source.principal=*/sa/x"
        );
        assert_eq!(
            summarize(&serde_json::json!({"destination_port": 8080})),
            "port 8080"
        );
        assert_eq!(
            summarize(&serde_json::json!({"future": {"a": 1}})),
            r#"future {"a":1}"#
        );
    }

    #[test]
    fn rows_from_http_and_network_filters() {
        let dump: ListenersDump = serde_json::from_value(serde_json::json!({
            "static_listeners": [{"listener": {"name": "l", "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.rbac", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                    "rules": {"action": "DENY", "policies": {"ns[a]-policy[deny]-rule[0]": {
                        "permissions": [{"destination_port": 22}], "principals": [{"any": true}]}}},
                    "stat_prefix": "tcp."}},
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "http_filters": [{"name": "envoy.filters.http.rbac", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                        "rules": {},
                        "shadow_rules": {"action": "DENY", "policies": {"dry": {"permissions": [{"any": true}], "principals": [{"any": true}]}}}
                    }}]}}
            ]}]}}]
        }))
        .unwrap();
        let rows = rbac_rows(&dump);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.row(true)
                    .into_iter()
                    .map(|c| c.text.into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells,
            vec![
                vec![
                    "l",
                    "DENY",
                    "ns[a]-policy[deny]-rule[0]",
                    "port 22",
                    "any",
                    "false",
                    "network"
                ],
                vec![
                    "l",
                    "ALLOW",
                    "<none> (nothing is allowed)",
                    "<none>",
                    "<none>",
                    "false",
                    "http"
                ],
                vec!["l", "DENY", "dry", "any", "any", "true", "http"],
            ]
        );
        assert_eq!(
            rows[2].rules.as_ref().unwrap()["permissions"][0]["any"],
            true
        );
    }

    #[test]
    fn captured_envoy_dump() {
        let d =
            crate::dump::ConfigDump::from_slice(&crate::dump::fixture::capture("config_dump.json"))
                .unwrap();
        let rows = rbac_rows(d.listeners().unwrap());
        let text: Vec<String> = rows
            .iter()
            .map(|r| {
                r.row(true)
                    .into_iter()
                    .map(|c| c.text)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        assert_eq!(
            text,
            vec![
                "virtualInbound/0.0.0.0_9080 | ALLOW | ns[default]-policy[allow-get]-rule[0] | (:method=GET AND path=/api/*) | principal=spiffe://cluster.local/ns/default/sa/sleep | false | http",
                "virtualInbound/0.0.0.0_9080 | DENY | ns[default]-policy[dry-run]-rule[0] | any | NOT direct remote 10.0.0.0/8 | true | http",
                "0.0.0.0_9443 | DENY | ns[default]-policy[deny-ssh]-rule[0] | port 22 | any | false | network",
            ]
        );
    }
}
