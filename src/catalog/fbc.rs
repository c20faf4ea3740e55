//! Reading a file-based catalog's declarative config directory into a [`Catalog`]: what
//! filtering needs of every object, and where each object is, so that rendering re-reads
//! only the objects it keeps.
//!
//! A real catalog is hundreds of megabytes, mostly bundles' `olm.bundle.object` base64
//! properties; no JSON object is held as a whole (a YAML document is, while it is
//! converted). Each file is read, its objects are parsed in one pass into light structs
//! that skip what filtering does not use, and the file's bytes are dropped. An object's
//! [`Location`] is its file and byte range (JSON) or document number (YAML). Files are
//! `*.json` (concatenated JSON objects) and `*.yaml`/`*.yml` (multi-document), walked in
//! name order; other files are skipped (opm would try to parse them too); `.indexignore`
//! files hold gitignore-style patterns relative to their directory (module `ignore`). A
//! symbolic link is an error.
//!
//! Refused (exit 2, naming the file and the object): malformed JSON or YAML, an object
//! without `schema`, an `olm.package` without a name usable as a directory name, a
//! duplicate package, channel or bundle, an `olm.channel`/`olm.bundle`/`olm.deprecations`
//! whose package has no `olm.package`, a bundle without `image` (opm accepts a bundle that
//! has only `olm.bundle.object`s; airlift needs the image to carry), a bundle version that
//! is not semver (opm refuses it too). A dependency opm loads but nothing can satisfy (no
//! semver `versionRange`) is kept, to be reported by selection. A channel entry naming a bundle the package lacks
//! is not refused here: selection decides what it needs.

mod ignore;
mod light;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{usage, Result};
use crate::oci::layout::read_limited;
use crate::text::{escaped, untrusted};

use super::version::{Range, Version};
use light::{BundleMeta, ChannelMeta, Header};

/// A catalog's config directory, read.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    /// Files holding objects, relative to `dir`, in the order read.
    files: Vec<PathBuf>,
    packages: BTreeMap<String, Package>,
    /// Objects of other schemas that name no package, in the order read.
    global: Vec<Location>,
}

/// One package and everything that names it.
#[derive(Debug)]
pub struct Package {
    pub name: String,
    pub default_channel: Option<String>,
    pub location: Location,
    pub channels: BTreeMap<String, Channel>,
    pub bundles: BTreeMap<String, Bundle>,
    pub deprecations: Vec<Location>,
    /// Objects of other schemas naming this package, in the order read.
    pub others: Vec<Location>,
}

#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub entries: Vec<Entry>,
    pub location: Location,
}

/// An `olm.channel` entry: the upgrade edges into bundle `name`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub replaces: Option<String>,
    pub skips: Vec<String>,
}

#[derive(Debug)]
pub struct Bundle {
    pub name: String,
    pub image: String,
    /// `properties[type=olm.package].value.version`.
    pub version: Option<Version>,
    /// `relatedImages[].image` (empty ones left out).
    pub related_images: Vec<String>,
    pub requires: Vec<Requirement>,
    /// `olm.gvk` properties: the APIs this bundle provides.
    pub provides: Vec<Gvk>,
    pub location: Location,
}

/// A dependency a bundle declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `olm.package.required`.
    Package { package: String, range: Range },
    /// An `olm.package.required` without a package name or a semver `versionRange` (opm
    /// loads it; nothing can satisfy it).
    Unreadable { package: String, range: String },
    /// `olm.gvk.required`.
    Gvk(Gvk),
}

/// An API: group, version, kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// Where an object is: a file of the catalog and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: usize,
    pub at: At,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    /// A JSON file's bytes `start..end`.
    Bytes(usize, usize),
    /// A YAML file's document, counted from 0.
    Document(usize),
}

/// The largest catalog file read (each is read whole; a real one is a few MB, a whole
/// catalog in one file a few hundred).
pub const MAX_CATALOG_FILE: u64 = 1 << 30;

impl Catalog {
    /// Read every `*.json`, `*.yaml` and `*.yml` under `dir`, honouring `.indexignore`.
    pub fn read(dir: &Path) -> Result<Catalog> {
        let files = ignore::walk(dir)?;
        let mut draft = Draft::default();
        for (index, rel) in files.iter().enumerate() {
            let path = dir.join(rel);
            let bytes = read_limited(&path, MAX_CATALOG_FILE)?;
            for_each_object(&path, &bytes, |at, json, head| {
                draft.add(&path, Location { file: index, at }, json, head)
            })?;
        }
        let packages = draft.finish(dir, &files)?;
        if packages.is_empty() {
            return Err(usage(format!("{}: the catalog has no package (no olm.package object)", shown(dir))));
        }
        Ok(Catalog { dir: dir.to_path_buf(), files, packages, global: draft.global })
    }

    /// Package names, sorted.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.packages.keys().map(String::as_str)
    }

    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    /// Objects of other schemas that name no package.
    pub fn global(&self) -> &[Location] {
        &self.global
    }

    /// The path of a file objects were read from.
    pub fn path(&self, file: usize) -> PathBuf {
        self.dir.join(&self.files[file])
    }
}

/// Call `f` with every object of a catalog file: its place, its JSON text, and the object
/// parsed as `T` (in the same pass that finds where it ends). YAML documents are converted
/// to JSON text, so that one parser reads both.
pub(crate) fn for_each_object<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    mut f: impl FnMut(At, &[u8], T) -> Result<()>,
) -> Result<()> {
    let malformed = |what: &str, e: &dyn std::fmt::Display| {
        usage(format!("{}: malformed {what}: {}", shown(path), escaped(&e.to_string())))
    };
    if is_yaml(path) {
        for (n, doc) in serde_yaml_ng::Deserializer::from_slice(bytes).enumerate() {
            let what = format!("YAML in document {}", n + 1);
            let value = serde_json::Value::deserialize(doc).map_err(|e| malformed(&what, &e))?;
            if value.is_null() {
                continue;
            }
            let json = serde_json::to_vec(&value).map_err(|e| malformed(&what, &e))?;
            let object = serde_json::from_value(value).map_err(|e| malformed(&what, &e))?;
            f(At::Document(n), &json, object)?;
        }
        return Ok(());
    }
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<T>();
    let mut end = 0;
    loop {
        let start = end + bytes[end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
        match stream.next() {
            None => return Ok(()),
            Some(Ok(object)) => {
                end = stream.byte_offset();
                f(At::Bytes(start, end), &bytes[start..end], object)?;
            }
            Some(Err(e)) => return Err(malformed(&format!("JSON in the object at byte {start}"), &e)),
        }
    }
}

pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Packages as they are read, in any order of files and objects.
#[derive(Default)]
struct Draft {
    packages: BTreeMap<String, Parts>,
    global: Vec<Location>,
}

#[derive(Default)]
struct Parts {
    package: Option<(Option<String>, Location)>,
    /// Where an object naming the package was first seen (for the error when it has none).
    first_seen: Option<Location>,
    channels: BTreeMap<String, Channel>,
    bundles: BTreeMap<String, Bundle>,
    deprecations: Vec<Location>,
    others: Vec<Location>,
}

impl Draft {
    fn add(&mut self, path: &Path, loc: Location, json: &[u8], head: Header) -> Result<()> {
        let Some(schema) = head.schema.as_deref() else {
            return Err(usage(format!("{}: has no schema", where_is(path, loc, "object", head.name.as_deref()))));
        };
        let what = || where_is(path, loc, schema, head.name.as_deref());
        if schema == "olm.package" {
            let name = head.name.as_deref().ok_or_else(|| usage(format!("{}: has no name", what())))?;
            check_package_name(name).map_err(|e| usage(format!("{}: {e}", what())))?;
            let parts = self.packages.entry(name.to_string()).or_default();
            if parts.package.is_some() {
                return Err(usage(format!("{}: package {} is defined twice", what(), untrusted(name))));
            }
            parts.package = Some((head.default_channel.clone(), loc));
            return Ok(());
        }
        let Some(package) = head.package.as_deref().filter(|p| !p.is_empty()) else {
            if matches!(schema, "olm.channel" | "olm.bundle" | "olm.deprecations") {
                return Err(usage(format!("{}: names no package", what())));
            }
            self.global.push(loc);
            return Ok(());
        };
        let parts = self.packages.entry(package.to_string()).or_default();
        parts.first_seen.get_or_insert(loc);
        match schema {
            "olm.channel" => parts.add_channel(head.name.as_deref(), light::parse(json, what)?, loc, what),
            "olm.bundle" => parts.add_bundle(head.name.as_deref(), light::parse(json, what)?, loc, what),
            "olm.deprecations" => {
                parts.deprecations.push(loc);
                Ok(())
            }
            _ => {
                parts.others.push(loc);
                Ok(())
            }
        }
    }

    fn finish(&mut self, dir: &Path, files: &[PathBuf]) -> Result<BTreeMap<String, Package>> {
        let mut packages = BTreeMap::new();
        for (name, parts) in std::mem::take(&mut self.packages) {
            let Some((default_channel, location)) = parts.package else {
                let file = parts.first_seen.map(|l| dir.join(&files[l.file])).unwrap_or_else(|| dir.to_path_buf());
                return Err(usage(format!(
                    "{}: objects name package {}, which has no olm.package object in the catalog",
                    shown(&file),
                    untrusted(&name)
                )));
            };
            let (channels, bundles, deprecations, others) =
                (parts.channels, parts.bundles, parts.deprecations, parts.others);
            packages.insert(
                name.clone(),
                Package { name, default_channel, location, channels, bundles, deprecations, others },
            );
        }
        Ok(packages)
    }
}

impl Parts {
    fn add_channel(
        &mut self,
        name: Option<&str>,
        meta: ChannelMeta,
        location: Location,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let name = name.ok_or_else(|| usage(format!("{}: has no name", what())))?;
        let mut entries = Vec::with_capacity(meta.entries.len());
        for (n, e) in meta.entries.into_iter().enumerate() {
            let entry_name = e.name.ok_or_else(|| usage(format!("{}: entry {} has no name", what(), n + 1)))?;
            entries.push(Entry { name: entry_name, replaces: e.replaces.filter(|r| !r.is_empty()), skips: e.skips });
        }
        if self.channels.contains_key(name) {
            return Err(usage(format!("{}: the package has this channel twice", what())));
        }
        self.channels.insert(name.to_string(), Channel { name: name.to_string(), entries, location });
        Ok(())
    }

    fn add_bundle(
        &mut self,
        name: Option<&str>,
        meta: BundleMeta,
        location: Location,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let name = name.ok_or_else(|| usage(format!("{}: has no name", what())))?;
        let image = meta.image.filter(|i| !i.is_empty()).ok_or_else(|| usage(format!("{}: has no image", what())))?;
        let mut bundle = Bundle {
            name: name.to_string(),
            image,
            version: None,
            related_images: meta.related_images.into_iter().filter_map(|r| r.image.filter(|i| !i.is_empty())).collect(),
            requires: Vec::new(),
            provides: Vec::new(),
            location,
        };
        for p in meta.properties {
            bundle.add_property(p).map_err(|e| usage(format!("{}: {e}", what())))?;
        }
        if self.bundles.contains_key(name) {
            return Err(usage(format!("{}: the package has this bundle twice", what())));
        }
        self.bundles.insert(name.to_string(), bundle);
        Ok(())
    }
}

impl Bundle {
    /// Only the version is checked (opm refuses a bundle without a semver version); a
    /// dependency opm would load as written is kept as written, to be reported.
    fn add_property(&mut self, p: light::Property) -> Result<(), String> {
        let v = p.value;
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        let gvk = || Gvk { group: text(&v.group), version: text(&v.version), kind: text(&v.kind) };
        match p.ty.as_str() {
            "olm.package" => {
                let version = v.version.as_deref().ok_or("the olm.package property has no version")?;
                let parsed =
                    Version::parse(version).ok_or_else(|| format!("version {} is not semver", untrusted(version)))?;
                self.version = Some(parsed);
            }
            "olm.package.required" => {
                let (package, range) = (text(&v.package_name), text(&v.version_range));
                self.requires.push(match Range::parse(&range) {
                    Some(range) if !package.is_empty() => Requirement::Package { package, range },
                    _ => Requirement::Unreadable { package, range },
                });
            }
            "olm.gvk.required" => self.requires.push(Requirement::Gvk(gvk())),
            "olm.gvk" => self.provides.push(gvk()),
            _ => {}
        }
        Ok(())
    }
}

/// A path for a message: a catalog's file names come from its image, so are escaped.
pub(crate) fn shown(path: &Path) -> String {
    escaped(&path.display().to_string())
}

/// A package name becomes a directory of the rendered catalog: one plain path component.
fn check_package_name(name: &str) -> Result<(), &'static str> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err("the package name is not a plain file name")
    }
}

/// `FILE: SCHEMA NAME (at byte N | in document N)` for messages.
fn where_is(path: &Path, loc: Location, schema: &str, name: Option<&str>) -> String {
    let at = match loc.at {
        At::Bytes(start, _) => format!("at byte {start}"),
        At::Document(n) => format!("in document {}", n + 1),
    };
    let name = name.map(|n| format!(" {}", untrusted(n))).unwrap_or_default();
    format!("{}: {}{name} ({at})", shown(path), untrusted(schema))
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
