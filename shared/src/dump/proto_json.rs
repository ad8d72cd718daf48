//! The proto3 JSON mapping as Envoy and istiod write it: snake_case (Envoy) or camelCase (istiod,
//! istioctl) field names, 64-bit integers as strings, `bytes` as base64, `Any` with an `@type`
//! URL, and the legacy `config` struct of Istio 1.3-era filters instead of `typed_config`.

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The type name of an `Any` type URL: `type.googleapis.com/envoy.admin.v3.ClustersConfigDump`
/// → `envoy.admin.v3.ClustersConfigDump`.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The last segment of a type name: `envoy.admin.v3.ClustersConfigDump` → `ClustersConfigDump`.
pub fn short_type_name(type_url: &str) -> &str {
    let name = type_name(type_url);
    name.rsplit('.').next().unwrap_or(name)
}

/// An unsigned integer that may be written as a number or as a string (`"5"`), or be absent.
pub fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        // google.protobuf.UInt32Value written as an object by some tools.
        Some(Value::Object(m)) => m.get("value").and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }),
        _ => None,
    })
}

/// A `u32` written as a number or a string, or absent.
pub fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(lenient_u64(d)?.and_then(|n| u32::try_from(n).ok()))
}

/// A boolean that may be absent (proto3 omits `false`).
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(
        Option::<Value>::deserialize(d)?,
        Some(Value::Bool(true))
    ))
}

/// A string that may be absent or `null`.
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    })
}

/// A field that must not spoil its parent: decoded as `T` when it has `T`'s shape, else the
/// default (Istio 1.3 `config` structs hold hand-written YAML of varying shapes).
pub fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let v = Value::deserialize(d)?;
    Ok(T::deserialize(&v).unwrap_or_default())
}

/// A list that legacy `config` structs sometimes write as a single object; elements of another
/// shape are dropped.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| T::deserialize(v).ok())
            .collect(),
        Value::Null => Vec::new(),
        v => T::deserialize(&v).ok().into_iter().collect(),
    })
}

/// Decode proto3 JSON `bytes`: standard base64 with or without padding, or the URL-safe alphabet.
pub fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(s).ok())
}

/// `config.core.v3.DataSource`: a file name, or inline data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataSource {
    /// A file on the proxy's disk.
    #[serde(default)]
    pub filename: Option<String>,
    /// base64 bytes.
    #[serde(default, alias = "inlineBytes")]
    pub inline_bytes: Option<String>,
    /// A string.
    #[serde(default, alias = "inlineString")]
    pub inline_string: Option<String>,
}

impl DataSource {
    /// The inline content, decoded (`inline_bytes` wins over `inline_string`).
    pub fn inline(&self) -> Option<Vec<u8>> {
        match (&self.inline_bytes, &self.inline_string) {
            (Some(b), _) => decode_bytes(b),
            (None, Some(s)) => Some(s.as_bytes().to_vec()),
            (None, None) => None,
        }
    }
}

/// `config.core.v3.Metadata`, reduced to what the views read: Istio's
/// `filter_metadata.istio.config`. The rest (Istio's `services` list, other filters' structs) is
/// skipped while parsing, not kept: a dump has tens of thousands of these.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// Per-filter structs; Istio writes `istio: {config: "/apis/..."}`.
    #[serde(default, alias = "filterMetadata")]
    filter_metadata: FilterMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct FilterMetadata {
    #[serde(default)]
    istio: Option<IstioMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct IstioMetadata {
    #[serde(default, deserialize_with = "only_string")]
    config: Option<String>,
}

/// A string, or `None` for a value of any other type.
fn only_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        _ => None,
    })
}

impl Metadata {
    /// `filter_metadata.istio.config`: the Istio resource that produced this object.
    pub fn istio_config(&self) -> Option<&str> {
        self.filter_metadata.istio.as_ref()?.config.as_deref()
    }
}

/// The configuration of a network or HTTP filter: `typed_config` (an `Any`, unwrapped from a
/// `TypedStruct` when it is one) or, on Istio 1.3-era proxies, the legacy `config` struct.
pub fn filter_config<'a>(typed: Option<&'a Value>, legacy: Option<&'a Value>) -> Option<&'a Value> {
    match typed {
        Some(v) => Some(unwrap_typed_struct(v)),
        None => legacy,
    }
}

/// `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` carry the real config in `value`.
pub fn unwrap_typed_struct(v: &Value) -> &Value {
    let is_typed_struct = v
        .get("@type")
        .and_then(Value::as_str)
        .is_some_and(|t| short_type_name(t) == "TypedStruct");
    if is_typed_struct {
        v.get("value").unwrap_or(v)
    } else {
        v
    }
}

/// The `@type` of an `Any` value (after unwrapping a `TypedStruct`, its `type_url`).
pub fn any_type(v: &Value) -> Option<&str> {
    let t = v.get("@type").and_then(Value::as_str)?;
    if short_type_name(t) == "TypedStruct" {
        return v
            .get("type_url")
            .or_else(|| v.get("typeUrl"))
            .and_then(Value::as_str)
            .or(Some(t));
    }
    Some(t)
}

/// Decode `v` as `T`, or `None` when it has another shape (views stay usable on odd input).
pub fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    T::deserialize(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct N {
        #[serde(default, deserialize_with = "lenient_u32")]
        a: Option<u32>,
        #[serde(default, deserialize_with = "lenient_u64")]
        b: Option<u64>,
        #[serde(default, deserialize_with = "lenient_bool")]
        c: bool,
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        let n: N = serde_json::from_str(r#"{"a": "80", "b": 5, "c": true}"#).unwrap();
        assert_eq!((n.a, n.b, n.c), (Some(80), Some(5), true));
        let n: N = serde_json::from_str(r#"{"a": {"value": 9}}"#).unwrap();
        assert_eq!((n.a, n.b, n.c), (Some(9), None, false));
    }

    #[test]
    fn legacy_shapes() {
        #[derive(Debug, Deserialize)]
        struct L {
            #[serde(default, deserialize_with = "one_or_many")]
            list: Vec<u32>,
            #[serde(default, deserialize_with = "lenient")]
            opt: Option<u32>,
        }
        let l: L = serde_json::from_str(r#"{"list": 3, "opt": "x"}"#).unwrap();
        assert_eq!((l.list, l.opt), (vec![3], None));
        let l: L = serde_json::from_str(r#"{"list": [1, "y", 2], "opt": 4}"#).unwrap();
        assert_eq!((l.list, l.opt), (vec![1, 2], Some(4)));
    }

    #[test]
    fn istio_metadata() {
        let m: Metadata = serde_json::from_str(
            r#"{"filterMetadata": {"istio": {"services": [{"host": "a"}], "config": "/apis/x"}, "other": [1]}}"#,
        )
        .unwrap();
        assert_eq!(m.istio_config(), Some("/apis/x"));
        let m: Metadata =
            serde_json::from_str(r#"{"filter_metadata": {"istio": {"config": 5}}}"#).unwrap();
        assert_eq!(m.istio_config(), None);
        let m: Metadata = serde_json::from_str(r#"{"filter_metadata": {}}"#).unwrap();
        assert_eq!(m.istio_config(), None);
    }

    #[test]
    fn type_names() {
        assert_eq!(
            type_name("type.googleapis.com/envoy.admin.v3.ClustersConfigDump"),
            "envoy.admin.v3.ClustersConfigDump"
        );
        assert_eq!(
            short_type_name("type.googleapis.com/envoy.admin.v2alpha.ClustersConfigDump"),
            "ClustersConfigDump"
        );
    }

    #[test]
    fn bytes_in_any_base64_alphabet() {
        assert_eq!(decode_bytes("W3JlZGFjdGVkXQ==").unwrap(), b"[redacted]");
        assert_eq!(decode_bytes("W3JlZGFjdGVkXQ").unwrap(), b"[redacted]");
        assert_eq!(decode_bytes("_-8").unwrap(), vec![0xff, 0xef]);
        assert!(decode_bytes("*").is_none());
    }

    #[test]
    fn filter_config_prefers_typed_and_unwraps_typed_struct() {
        let typed = serde_json::json!({
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/x.Y",
            "value": {"k": 1}
        });
        let legacy = serde_json::json!({"k": 2});
        assert_eq!(filter_config(Some(&typed), Some(&legacy)).unwrap()["k"], 1);
        assert_eq!(any_type(&typed), Some("type.googleapis.com/x.Y"));
        assert_eq!(filter_config(None, Some(&legacy)).unwrap()["k"], 2);
    }

    #[test]
    fn data_source_inline() {
        let d: DataSource = serde_json::from_str(r#"{"inlineString": "abc"}"#).unwrap();
        assert_eq!(d.inline().unwrap(), b"abc");
        let m: Metadata = serde_json::from_str(
            r#"{"filterMetadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/a/destination-rule/b"}}}"#,
        )
        .unwrap();
        assert!(m.istio_config().unwrap().ends_with("/b"));
    }
}
