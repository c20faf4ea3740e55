//! Operator catalogs (file-based catalogs, FBC): what `mirror.operators` of an image set
//! file asks for, read from a catalog image, filtered the way oc-mirror v2 filters (with
//! dependencies resolved), and rebuilt byte-reproducibly as a smaller catalog image.
//!
//! - [`fbc`]: reading a catalog's declarative config directory (`*.json`, `*.yaml`,
//!   `.indexignore`) into a [`fbc::Catalog`]
//! - [`version`]: semantic versions and the ranges `skipRange` and dependencies use
//! - [`select`]: the filter rules ([`CatalogFilter`] → [`select::Selection`])
//! - [`render`]: the kept config, one `catalog.json` per package, in a fixed order
//! - [`image`]: a catalog image's config directory read from its layers (whiteouts
//!   applied), and the filtered catalog image built from the original (two new layers)
//!
//! This module reads files and blobs it is given; fetching is the trip library's.

pub mod fbc;
pub mod image;
pub mod render;
pub mod select;
pub mod version;

use serde::{Deserialize, Serialize};

/// One entry of `mirror.operators`: a catalog and what to keep of it. Serialized (JSON,
/// camelCase, as the image set file spells it) into the bundle manifest, so the gate can
/// tell which filter a bundle carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogFilter {
    /// The catalog image, `docker://HOST/REPO:TAG|@DIGEST`.
    pub catalog: String,
    /// With no packages: the catalog as published. With packages: every bundle of each
    /// selected channel.
    #[serde(default, skip_serializing_if = "is_false")]
    pub full: bool,
    /// Packages to keep (every package when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageFilter>,
    /// Report dependencies instead of adding them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_dependencies: bool,
    /// Where the filtered catalog goes: `[NAMESPACE/]NAME` replacing the repository path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_catalog: Option<String>,
    /// The filtered catalog's tag (default: the catalog's own tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tag: Option<String>,
    /// `OS/ARCH[/VARIANT]` to keep of multi-platform images (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// A CatalogSource YAML file to complete (`targetCatalogSourceTemplate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_source_template: Option<String>,
}

/// One entry of `packages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageFilter {
    pub name: String,
    /// The kept default channel, required when the channels kept leave out the catalog's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_channel: Option<String>,
    /// A package-level range: applies to each selected channel.
    #[serde(default, flatten)]
    pub range: Range,
    /// Channels to keep (every channel when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelFilter>,
}

/// One entry of a package's `channels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelFilter {
    pub name: String,
    #[serde(default, flatten)]
    pub range: Range,
}

/// A version range as written (`minVersion`, `maxVersion`; v1alpha2's `minBundle`, a
/// bundle name whose version is the minimum). Parsed and checked by [`select`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bundle: Option<String>,
}

impl Range {
    /// Whether no bound is given.
    pub fn is_empty(&self) -> bool {
        self.min_version.is_none() && self.max_version.is_none() && self.min_bundle.is_none()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
