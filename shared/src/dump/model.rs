//! `/config_dump` as typed sections, dispatched on their `@type` (v3 `envoy.admin.v3.*ConfigDump`
//! and the `envoy.admin.v2alpha.*ConfigDump` of Istio ≤1.4 proxies). Sections we do not model stay
//! as raw JSON, so `-o json` passes them through untouched.
//!
//! Large dumps (hundreds of MB): the bytes are scanned once for the `configs` array, each
//! section's `@type` is read from its first key, and a section's JSON is kept as a zero-copy
//! slice of the input. [`ConfigDump::from_bytes`] decodes only the section kind a view needs.

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::bootstrap::BootstrapDump;
use super::clusters::ClustersDump;
use super::listeners::ListenersDump;
use super::proto_json::short_type_name;
use super::routes::RoutesDump;
use super::secrets::SecretsDump;

mod single_pass;

/// A parsed `/config_dump`.
#[derive(Debug, Default)]
pub struct ConfigDump {
    /// The `configs` array, in dump order.
    pub sections: Vec<Section>,
}

/// One entry of `configs`.
#[derive(Debug)]
pub struct Section {
    /// Its `@type`.
    pub type_url: String,
    /// The JSON as received: a slice of the dump's bytes (no copy).
    text: Bytes,
    /// The typed form, for the sections the views read.
    pub body: SectionBody,
}

impl Section {
    /// The JSON as received (`None` when the dump was read for one kind of section).
    pub fn raw(&self) -> Option<&RawValue> {
        // Validated when the dump was parsed; this re-reads only this section.
        serde_json::from_slice(&self.text).ok()
    }

    /// The JSON as received, as bytes.
    pub fn raw_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// The typed content of a section.
#[derive(Debug)]
pub enum SectionBody {
    /// `BootstrapConfigDump`.
    Bootstrap(Box<BootstrapDump>),
    /// `ClustersConfigDump`.
    Clusters(ClustersDump),
    /// `ListenersConfigDump`.
    Listeners(ListenersDump),
    /// `RoutesConfigDump`.
    Routes(RoutesDump),
    /// `SecretsConfigDump`.
    Secrets(SecretsDump),
    /// A section of a known kind left undecoded ([`ConfigDump::from_bytes`] with another kind).
    Undecoded(SectionKind),
    /// Anything else (ScopedRoutes, Endpoints, Ecds, ...): kept raw.
    Other,
}

/// Which section a view needs; used in "no such section" errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `BootstrapConfigDump`.
    Bootstrap,
    /// `ClustersConfigDump`.
    Clusters,
    /// `ListenersConfigDump`.
    Listeners,
    /// `RoutesConfigDump`.
    Routes,
    /// `SecretsConfigDump`.
    Secrets,
}

impl SectionKind {
    /// The message name, e.g. `ClustersConfigDump`.
    pub fn message(self) -> &'static str {
        match self {
            Self::Bootstrap => "BootstrapConfigDump",
            Self::Clusters => "ClustersConfigDump",
            Self::Listeners => "ListenersConfigDump",
            Self::Routes => "RoutesConfigDump",
            Self::Secrets => "SecretsConfigDump",
        }
    }

    /// The `/config_dump?mask=` that keeps just this section's resources (as istioctl asks).
    pub fn mask(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::Clusters => "dynamic_active_clusters,dynamic_warming_clusters,static_clusters",
            Self::Listeners => "dynamic_listeners,static_listeners",
            Self::Routes => "dynamic_route_configs,static_route_configs",
            Self::Secrets => "dynamic_active_secrets,dynamic_warming_secrets",
        }
    }

    fn of_type_url(type_url: &str) -> Option<Self> {
        // v3 and v2alpha differ only in the package; any admin package is accepted.
        if !super::proto_json::type_name(type_url).starts_with("envoy.admin.") {
            return None;
        }
        Some(match short_type_name(type_url) {
            "BootstrapConfigDump" => Self::Bootstrap,
            "ClustersConfigDump" => Self::Clusters,
            "ListenersConfigDump" => Self::Listeners,
            "RoutesConfigDump" => Self::Routes,
            "SecretsConfigDump" => Self::Secrets,
            _ => return None,
        })
    }
}

/// Where a decoding error is, within the bytes given to [`ConfigDump::from_slice`].
#[derive(Debug)]
pub struct DecodeError {
    /// What was being read: `config_dump` or a section's `@type`.
    pub what: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// 0-based byte offset.
    pub offset: usize,
    /// The parser's message.
    pub source: serde_json::Error,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    configs: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(rename = "@type", default)]
    type_url: String,
}

impl ConfigDump {
    /// Parse the bytes of a `/config_dump` response or file, decoding every known section.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_bytes(Bytes::copy_from_slice(bytes), None)
    }

    /// Parse a `/config_dump` without copying it, decoding only the sections of kind `only`
    /// (every known section when `None`); the other known sections are
    /// [`SectionBody::Undecoded`]. Errors in sections that are not decoded go unnoticed.
    ///
    /// With `only`, the dump is read in one pass and the sections keep no raw JSON
    /// ([`Section::raw`] is `None`); without, every section keeps its JSON (a slice of `bytes`).
    pub fn from_bytes(bytes: Bytes, only: Option<SectionKind>) -> Result<Self, DecodeError> {
        if let Some(kind) = only
            && not_an_object(&bytes).is_none()
            && let Ok(sections) = single_pass::sections(&bytes, kind)
        {
            return Ok(Self { sections });
        }
        // Sections without a leading @type, and errors (reported with their section).
        Self::scan(bytes, only)
    }

    /// The general path: the extent and `@type` of every section, then the wanted ones decoded.
    fn scan(bytes: Bytes, only: Option<SectionKind>) -> Result<Self, DecodeError> {
        let parsed = match not_an_object(&bytes) {
            Some(e) => Err(e),
            None => serde_json::from_slice::<Wire<'_>>(&bytes),
        };
        let wire = parsed.map_err(|source| {
            let (line, column) = (source.line(), source.column());
            DecodeError {
                what: "Envoy config_dump".into(),
                line,
                column,
                offset: crate::input::byte_offset(&bytes, line, column),
                source,
            }
        })?;
        let base = bytes.as_ptr() as usize;
        let spans: Vec<Range<usize>> = wire
            .configs
            .iter()
            .map(|raw| {
                let start = (raw.get().as_ptr() as usize).saturating_sub(base);
                start..start + raw.get().len()
            })
            .collect();
        let mut sections = Vec::with_capacity(spans.len());
        for span in spans {
            let text = bytes.slice(span.clone());
            let at = |what: &str, source: serde_json::Error| {
                let offset =
                    span.start + crate::input::byte_offset(&text, source.line(), source.column());
                let (line, column) = line_column(&bytes, offset);
                DecodeError {
                    what: what.to_string(),
                    line,
                    column,
                    offset,
                    source,
                }
            };
            let type_url = match leading_type(&text) {
                Some(t) => t,
                None => {
                    serde_json::from_slice::<Header>(&text)
                        .map_err(|e| at("config_dump section", e))?
                        .type_url
                }
            };
            let body = match SectionKind::of_type_url(&type_url) {
                None => SectionBody::Other,
                Some(kind) if only.is_some_and(|o| o != kind) => SectionBody::Undecoded(kind),
                Some(kind) => decode_body(kind, &text).map_err(|e| at(&type_url, e))?,
            };
            sections.push(Section {
                type_url,
                text,
                body,
            });
        }
        Ok(Self { sections })
    }

    /// The first section of a kind.
    pub fn section(&self, kind: SectionKind) -> Option<&SectionBody> {
        self.sections
            .iter()
            .map(|s| &s.body)
            .find(|b| b.kind() == Some(kind))
    }

    /// The raw JSON of the first section of a kind.
    pub fn raw_section(&self, kind: SectionKind) -> Option<&RawValue> {
        self.sections
            .iter()
            .find(|s| s.body.kind() == Some(kind))
            .and_then(Section::raw)
    }

    /// `BootstrapConfigDump`.
    pub fn bootstrap(&self) -> Option<&BootstrapDump> {
        match self.section(SectionKind::Bootstrap)? {
            SectionBody::Bootstrap(b) => Some(b),
            _ => None,
        }
    }
    /// `ClustersConfigDump`.
    pub fn clusters(&self) -> Option<&ClustersDump> {
        match self.section(SectionKind::Clusters)? {
            SectionBody::Clusters(c) => Some(c),
            _ => None,
        }
    }
    /// `ListenersConfigDump`.
    pub fn listeners(&self) -> Option<&ListenersDump> {
        match self.section(SectionKind::Listeners)? {
            SectionBody::Listeners(l) => Some(l),
            _ => None,
        }
    }
    /// `RoutesConfigDump`.
    pub fn routes(&self) -> Option<&RoutesDump> {
        match self.section(SectionKind::Routes)? {
            SectionBody::Routes(r) => Some(r),
            _ => None,
        }
    }
    /// `SecretsConfigDump`.
    pub fn secrets(&self) -> Option<&SecretsDump> {
        match self.section(SectionKind::Secrets)? {
            SectionBody::Secrets(s) => Some(s),
            _ => None,
        }
    }
}

impl SectionBody {
    fn kind(&self) -> Option<SectionKind> {
        Some(match self {
            Self::Bootstrap(_) => SectionKind::Bootstrap,
            Self::Clusters(_) => SectionKind::Clusters,
            Self::Listeners(_) => SectionKind::Listeners,
            Self::Routes(_) => SectionKind::Routes,
            Self::Secrets(_) => SectionKind::Secrets,
            Self::Undecoded(kind) => *kind,
            Self::Other => return None,
        })
    }
}

fn decode_body(kind: SectionKind, text: &[u8]) -> Result<SectionBody, serde_json::Error> {
    Ok(match kind {
        SectionKind::Bootstrap => SectionBody::Bootstrap(Box::new(serde_json::from_slice(text)?)),
        SectionKind::Clusters => SectionBody::Clusters(serde_json::from_slice(text)?),
        SectionKind::Listeners => SectionBody::Listeners(serde_json::from_slice(text)?),
        SectionKind::Routes => SectionBody::Routes(serde_json::from_slice(text)?),
        SectionKind::Secrets => SectionBody::Secrets(serde_json::from_slice(text)?),
    })
}

/// The `@type` of a section whose first key is `"@type"` (as Envoy writes them), read without
/// scanning the rest of the section; `None` for any other layout.
fn leading_type(text: &[u8]) -> Option<String> {
    let rest = text.trim_ascii_start().strip_prefix(b"{")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"@type\"")?;
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let mut de = serde_json::Deserializer::from_slice(rest);
    String::deserialize(&mut de).ok()
}

/// The parse error of a document that is not a JSON object (serde would read an array into a
/// struct), or `None`.
pub fn not_an_object(bytes: &[u8]) -> Option<serde_json::Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).err()
}

/// 1-based line and column of a byte offset.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let upto = &bytes[..offset.min(bytes.len())];
    let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
    let column = upto.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

/// The whole dump, sections as received: `{"configs": [...]}`.
impl Serialize for ConfigDump {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            configs: Vec<&'a RawValue>,
        }
        let configs = self
            .sections
            .iter()
            .map(|x| {
                x.raw()
                    .ok_or_else(|| serde::ser::Error::custom("section is not JSON"))
            })
            .collect::<Result<_, S::Error>>()?;
        Out { configs }.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_type_and_keeps_unknown_sections() {
        let text = br#"{"configs": [
          {"@type": "type.googleapis.com/envoy.admin.v2alpha.ClustersConfigDump", "static_clusters": [{"cluster": {"name": "a"}}]},
          {"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump", "x": [1, 2]},
          {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"}
        ]}"#;
        let d = ConfigDump::from_slice(text).unwrap();
        assert_eq!(d.sections.len(), 3);
        assert!(matches!(d.sections[1].body, SectionBody::Other));
        assert_eq!(d.clusters().unwrap().static_clusters.len(), 1);
        assert!(d.routes().is_some());
        assert!(d.listeners().is_none());
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["configs"][1]["x"][1], 2);
    }

    #[test]
    fn section_errors_point_into_the_file() {
        let text = b"{\"configs\": [\n {\"@type\": \"type.googleapis.com/envoy.admin.v3.ClustersConfigDump\",\n  \"static_clusters\": 5}]}";
        let e = ConfigDump::from_slice(text).unwrap_err();
        assert_eq!(
            e.what,
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
        );
        assert_eq!(e.line, 3);
        assert_eq!(text[e.offset], b'5');
    }

    #[test]
    fn only_objects_are_dumps() {
        for text in [&b"[]"[..], b"5", b"", b"null"] {
            assert!(ConfigDump::from_slice(text).is_err(), "{text:?}");
        }
        assert!(ConfigDump::from_slice(b" {}").is_ok());
    }

    #[test]
    fn only_the_asked_kind_is_decoded() {
        let text = br#"{"configs": [
          {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": [{"cluster": {"name": "a"}}]},
          {"last_updated": "x", "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "static_route_configs": 5}
        ]}"#;
        let d =
            ConfigDump::from_bytes(Bytes::from_static(text), Some(SectionKind::Clusters)).unwrap();
        assert_eq!(d.clusters().unwrap().static_clusters.len(), 1);
        // Found by its @type (not the first key), not decoded (it would not decode).
        assert!(matches!(
            d.sections[1].body,
            SectionBody::Undecoded(SectionKind::Routes)
        ));
        assert!(d.routes().is_none());
        assert!(d.raw_section(SectionKind::Routes).is_some());
        assert!(ConfigDump::from_slice(text).is_err());
    }

    #[test]
    fn one_pass_for_one_kind() {
        let text = br#"{"configs": [
          {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {"id": "n"}}},
          {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": [{"cluster": {"name": "a"}}]},
          {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "x": [1]},
          {},
          {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "static_route_configs": 5}
        ], "extra": true}"#;
        let d =
            ConfigDump::from_bytes(Bytes::from_static(text), Some(SectionKind::Clusters)).unwrap();
        let bodies: Vec<Option<SectionKind>> = d.sections.iter().map(|s| s.body.kind()).collect();
        assert_eq!(
            bodies,
            [
                Some(SectionKind::Bootstrap),
                Some(SectionKind::Clusters),
                None,
                None,
                Some(SectionKind::Routes)
            ]
        );
        assert_eq!(d.clusters().unwrap().static_clusters.len(), 1);
        assert!(d.bootstrap().is_none(), "not decoded");
        assert!(
            d.raw_section(SectionKind::Clusters).is_none(),
            "no raw JSON kept"
        );
        assert_eq!(
            d.sections[2].type_url,
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
        );
        // An error in the wanted section is reported as by the general path.
        let e = ConfigDump::from_bytes(Bytes::from_static(text), Some(SectionKind::Routes))
            .unwrap_err();
        assert_eq!(
            e.what,
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
        );
        assert_eq!(text[e.offset], b'5');
    }

    #[test]
    fn sections_are_slices_of_the_input() {
        let text = br#"{"configs": [ {"@type" : "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}} ]}"#;
        let d = ConfigDump::from_slice(text).unwrap();
        assert_eq!(
            d.sections[0].raw_bytes(),
            &br#"{"@type" : "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}}"#[..]
        );
        assert_eq!(
            leading_type(d.sections[0].raw_bytes()).as_deref(),
            Some("type.googleapis.com/envoy.admin.v3.BootstrapConfigDump")
        );
        assert_eq!(leading_type(br#"{"a": 1, "@type": "x"}"#), None);
        assert!(d.bootstrap().is_some());
    }

    #[test]
    fn truncated_input_reports_the_end() {
        let text = br#"{"configs": [{"@type": "x", "#;
        let e = ConfigDump::from_slice(text).unwrap_err();
        assert_eq!(e.what, "Envoy config_dump");
        assert_eq!(e.offset, text.len() - 1, "the last byte read");
    }
}
