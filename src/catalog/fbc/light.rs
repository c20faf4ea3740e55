//! The parts of catalog objects filtering reads; everything else is skipped by the parser
//! without being kept (the base64 `olm.bundle.object`s are most of a catalog's bytes).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{usage, Result};
use crate::text::escaped;

/// Parse one object's JSON text; `what` names the object in the error.
pub(super) fn parse<'a, T: Deserialize<'a>>(json: &'a [u8], what: impl Fn() -> String) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| usage(format!("{}: {}", what(), escaped(&e.to_string()))))
}

/// What every object has.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    pub schema: Option<String>,
    pub name: Option<String>,
    pub package: Option<String>,
    pub default_channel: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ChannelMeta {
    #[serde(default)]
    pub entries: Vec<EntryMeta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntryMeta {
    pub name: Option<String>,
    pub replaces: Option<String>,
    #[serde(default)]
    pub skips: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BundleMeta {
    pub image: Option<String>,
    #[serde(default)]
    pub properties: Vec<Property>,
    #[serde(default)]
    pub related_images: Vec<RelatedImage>,
}

#[derive(Deserialize)]
pub(super) struct RelatedImage {
    pub image: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Property {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub value: Fields,
}

/// The string fields of a property's value that dependencies and versions use; a value
/// of any other shape (a string, a number, a base64 object) is skipped.
#[derive(Default)]
pub(super) struct Fields {
    pub package_name: Option<String>,
    pub version: Option<String>,
    pub version_range: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        d.deserialize_any(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut out = Fields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "packageName" => &mut out.package_name,
                "version" => &mut out.version,
                "versionRange" => &mut out.version_range,
                "group" => &mut out.group,
                "kind" => &mut out.kind,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<serde_json::Value>()?.as_str().map(str::to_string);
        }
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Fields, E> {
        Ok(Fields::default())
    }
}
