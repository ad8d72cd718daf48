//! Envoy v3 JSON resources (proto3 JSON mapping, `@type` on every `Any`) to protobuf bytes,
//! driven by the descriptor pool of [`super::descriptor`]. Unknown fields, unknown enum values
//! and unknown `@type`s are errors naming the resource and the field path, so drift between
//! the config generator and the Envoy API is caught before Envoy sees it.

use anyhow::{Context as _, Result, anyhow, bail};
use prost::Message as _;
use prost_reflect::DynamicMessage;
use serde_json::Value;

use super::descriptor::pool;
use super::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

/// One resource, validated and encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub name: String,
    pub json: Value,
    /// The protobuf encoding of the resource (the `value` of its `Any`).
    pub bytes: Vec<u8>,
}

/// What a type URL is called in messages, and the field that holds a resource's name.
pub fn describe(type_url: &str) -> Option<(&'static str, &'static str, &'static str)> {
    // (label, snake_case name field, camelCase name field)
    match type_url {
        CLUSTER => Some(("cluster", "name", "name")),
        LISTENER => Some(("listener", "name", "name")),
        ROUTE => Some(("route configuration", "name", "name")),
        ENDPOINT => Some(("cluster load assignment", "cluster_name", "clusterName")),
        _ => None,
    }
}

/// Validates and encodes one resource of `type_url` given as Envoy v3 JSON.
pub fn encode(type_url: &str, resource: &Value) -> Result<Encoded> {
    let (label, name_field, name_field_camel) =
        describe(type_url).ok_or_else(|| anyhow!("unsupported resource type {type_url}"))?;
    let obj = resource
        .as_object()
        .ok_or_else(|| anyhow!("{label}: not a JSON object: {resource}"))?;
    let name = obj
        .get(name_field)
        .or_else(|| obj.get(name_field_camel))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("{label} without a {name_field}: {}", abbreviate(resource)))?
        .to_owned();
    if let Some(t) = obj.get("@type")
        && t.as_str() != Some(type_url)
    {
        bail!("{label} {name:?}: @type is {t}, expected {type_url:?}");
    }
    let mut body = obj.clone();
    body.remove("@type");
    let bytes =
        to_protobuf(type_url, &Value::Object(body)).with_context(|| format!("{label} {name:?}"))?;
    Ok(Encoded {
        name,
        json: resource.clone(),
        bytes,
    })
}

/// Encodes a JSON message (without a top-level `@type`) of the type named by `type_url`.
pub fn to_protobuf(type_url: &str, json: &Value) -> Result<Vec<u8>> {
    let message_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let desc = pool().get_message_by_name(message_name).ok_or_else(|| {
        anyhow!("message {message_name} is not in the meshsim Envoy API descriptor set")
    })?;
    let mut track = serde_path_to_error::Track::new();
    match DynamicMessage::deserialize(
        desc,
        serde_path_to_error::Deserializer::new(json, &mut track),
    ) {
        Ok(m) => Ok(m.encode_to_vec()),
        Err(e) => {
            let path = track.path().to_string();
            if path.is_empty() || path == "?" {
                Err(anyhow!("{e}"))
            } else {
                Err(anyhow!("at {path}: {e}"))
            }
        }
    }
}

/// Decodes protobuf bytes of `message_name` to JSON with the proto field names (as Envoy's
/// admin prints them).
pub fn to_json(message_name: &str, bytes: &[u8]) -> Result<Value> {
    let desc = pool().get_message_by_name(message_name).ok_or_else(|| {
        anyhow!("message {message_name} is not in the meshsim Envoy API descriptor set")
    })?;
    let msg =
        DynamicMessage::decode(desc, bytes).with_context(|| format!("decoding {message_name}"))?;
    let opts = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    Ok(msg.serialize_with_options(serde_json::value::Serializer, &opts)?)
}

fn abbreviate(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s
                .char_indices()
                .take_while(|(i, _)| *i < 120)
                .last()
                .map_or(0, |(i, c)| i + c.len_utf8())]
        )
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hcm(http_filters: Value) -> Value {
        json!({
            "@type": LISTENER,
            "name": "virtualInbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "in",
                    "route_config": {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "0s"}}]}]},
                    "http_filters": http_filters,
                },
            }]}],
        })
    }

    #[test]
    fn a_listener_with_nested_any_encodes() {
        let l = hcm(json!([
            {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"origins-0": {"issuer": "https://issuer", "local_jwks": {"inline_string": "{}"}, "forward": true, "payload_in_metadata": "https://issuer"}},
                "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
                "bypass_cors_preflight": true,
            }},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ]));
        let e = encode(LISTENER, &l).unwrap();
        assert_eq!(e.name, "virtualInbound");
        // round trip: the JWT provider survives
        let back = to_json("envoy.config.listener.v3.Listener", &e.bytes).unwrap();
        let tc = &back["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            tc["http_filters"][0]["typed_config"]["providers"]["origins-0"]["issuer"],
            "https://issuer"
        );
        assert_eq!(
            tc["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["timeout"],
            "0s"
        );
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let l = hcm(
            json!([{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "no_such_field": 1}}]),
        );
        let err = format!("{:#}", encode(LISTENER, &l).unwrap_err());
        assert!(err.starts_with("listener \"virtualInbound\": at filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"), "{err}");
        assert!(err.contains("no_such_field"), "{err}");
    }

    #[test]
    fn unknown_type_url_and_enum_are_errors() {
        let l = hcm(
            json!([{"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope"}}]),
        );
        let err = format!("{:#}", encode(LISTENER, &l).unwrap_err());
        assert!(
            err.contains("envoy.extensions.filters.http.nope.v3.Nope"),
            "{err}"
        );
        let c = json!({"@type": CLUSTER, "name": "c", "type": "NOT_A_TYPE"});
        let err = format!("{:#}", encode(CLUSTER, &c).unwrap_err());
        assert!(err.starts_with("cluster \"c\": at type"), "{err}");
    }

    #[test]
    fn wrong_or_missing_identity_is_an_error() {
        let err = format!(
            "{:#}",
            encode(CLUSTER, &json!({"@type": LISTENER, "name": "l"})).unwrap_err()
        );
        assert!(err.contains("@type is"), "{err}");
        let err = format!(
            "{:#}",
            encode(ENDPOINT, &json!({"@type": ENDPOINT, "endpoints": []})).unwrap_err()
        );
        assert!(
            err.starts_with("cluster load assignment without a cluster_name"),
            "{err}"
        );
        assert_eq!(
            encode(ENDPOINT, &json!({"clusterName": "x"})).unwrap().name,
            "x"
        );
    }
}
