//! One pass over a `/config_dump` that decodes the sections of one kind and skips the rest
//! without keeping them: for a table view of a dump of hundreds of MB, this reads each byte once
//! (the general path reads the dump for the sections' extent, then the wanted section again).
//! It needs each section's `@type` as its first key, as Envoy and istioctl write them; the caller
//! falls back to the general path on any error or on another layout.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::{Section, SectionBody, SectionKind};

/// The sections of the dump in `bytes`, those of `kind` decoded, the others with their `@type`
/// only (and no raw JSON).
pub(super) fn sections(bytes: &[u8], kind: SectionKind) -> Result<Vec<Section>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let sections = de.deserialize_map(Dump(kind))?;
    de.end()?;
    Ok(sections)
}

struct Dump(SectionKind);

impl<'de> Visitor<'de> for Dump {
    type Value = Vec<Section>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an Envoy config_dump object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sections = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "configs" {
                sections = map.next_value_seed(Configs(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(sections)
    }
}

struct Configs(SectionKind);

impl<'de> DeserializeSeed<'de> for Configs {
    type Value = Vec<Section>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Configs {
    type Value = Vec<Section>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the configs array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element_seed(OneSection(self.0))? {
            out.push(s);
        }
        Ok(out)
    }
}

struct OneSection(SectionKind);

impl<'de> DeserializeSeed<'de> for OneSection {
    type Value = Section;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneSection {
    type Value = Section;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config_dump section")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let section = |type_url: String, body| Section {
            type_url,
            text: Bytes::new(),
            body,
        };
        match map.next_key::<Cow<'de, str>>()? {
            None => return Ok(section(String::new(), SectionBody::Other)),
            Some(k) if k == "@type" => {}
            Some(_) => return Err(A::Error::custom("@type is not the first key")),
        }
        let type_url: String = map.next_value()?;
        let rest = || MapAccessDeserializer::new(map);
        let body = match SectionKind::of_type_url(&type_url) {
            Some(kind) if kind == self.0 => match kind {
                SectionKind::Bootstrap => {
                    SectionBody::Bootstrap(Box::new(Deserialize::deserialize(rest())?))
                }
                SectionKind::Clusters => SectionBody::Clusters(Deserialize::deserialize(rest())?),
                SectionKind::Listeners => SectionBody::Listeners(Deserialize::deserialize(rest())?),
                SectionKind::Routes => SectionBody::Routes(Deserialize::deserialize(rest())?),
                SectionKind::Secrets => SectionBody::Secrets(Deserialize::deserialize(rest())?),
            },
            other => {
                IgnoredAny::deserialize(rest())?;
                other.map_or(SectionBody::Other, SectionBody::Undecoded)
            }
        };
        Ok(section(type_url, body))
    }
}
