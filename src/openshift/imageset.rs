//! oc-mirror's image set file (`ImageSetConfiguration`), the subset airlift can act on.
//!
//! A user moving from oc-mirror keeps the file they have; what airlift cannot do exactly as
//! written is refused with an error naming the field, never ignored, so a bundle never
//! silently lacks what the file asked for.
//!
//! Supported (`kind: ImageSetConfiguration`, `apiVersion: mirror.openshift.io/v1alpha2` or
//! `mirror.openshift.io/v2alpha1`):
//! - `mirror.platform.architectures` (default `[amd64]`; amd64, arm64, ppc64le, s390x, multi);
//! - `mirror.platform.release` (oc-mirror v2): one release image reference, a registry
//!   image or an OCI layout (`oci://DIR`), packed like an entry of `releases`;
//! - `mirror.platform.platforms` (oc-mirror v2; `{os, architecture}` or `OS/ARCH`, not with
//!   `architectures`): `version:` releases become the `multi` payload, and only those
//!   platforms are kept of every release's and component's index (original digests kept);
//! - `mirror.platform.kubeVirtContainer: true`: each release's KubeVirt container image, as
//!   its payload's boot images ConfigMap names it for the listed architectures, is packed
//!   as a component of that release (oc-mirror's release content);
//! - `mirror.platform.releases` (an airlift extension): a release image reference, used as
//!   is, or `version: X.Y.Z`, which becomes `BASE:X.Y.Z-ARCH` for every architecture, BASE
//!   being `mirror.platform.releaseImageBase` (also an extension; default
//!   [`DEFAULT_RELEASE_BASE`]);
//! - `mirror.platform.channels` (`name`, `type: ocp|okd`, `minVersion`, `maxVersion`, `full`,
//!   `shortestPath`), kept as [`Channels`] for `pack` to resolve against the update graph
//!   ([`crate::openshift::graph`]); each version becomes a release image like `version:`
//!   (OKD: `quay.io/openshift/okd:VERSION` unless releaseImageBase says otherwise);
//! - `mirror.platform.graph` ([`ImageSet::graph`]: pack builds the graph-data image);
//! - `mirror.operators` ([`CatalogFilter`]s, v1alpha2 and v2alpha1 spellings): `catalog`
//!   (a registry reference, or an OCI layout `oci:DIR[:REF]`, oc-mirror's `oci://DIR`
//!   read as `oci:DIR`), `packages` (`name`,
//!   `defaultChannel`, `minVersion`/`maxVersion`/`minBundle`, `channels` with the same
//!   ranges), `full`, `skipDependencies`, `targetCatalog`, `targetTag`,
//!   `targetCatalogSourceTemplate`, `platforms` (`{os, architecture[, variant]}` or
//!   `OS/ARCH`); v1alpha2's deprecated `targetName` is read as the `targetCatalog` it
//!   stands for, with a warning. A range on a package and on one of its channels, a range
//!   with `full: true`, or `minVersion` with `minBundle`, are refused, as oc-mirror does;
//! - `mirror.additionalImages` (`name`, `targetRepo`/`targetTag`: where the image lands and
//!   what the mirror sets map its source repository to; `platforms`: the platforms kept of
//!   an index, as `pack --platform` keeps them, and an index with none of them is refused)
//!   and `mirror.blockedImages`: each blocked `name` is a regular
//!   expression searched (unanchored, as oc-mirror v2 does) in every image's reference,
//!   with its registry, tag and digest; a plain repository name therefore blocks every tag
//!   of it. A blocked catalog or additional image is skipped with a warning, pack leaves
//!   out the images a catalog brings that are blocked, and a blocked release component
//!   refuses the release;
//! - `storageConfig` (oc-mirror's own state), `archiveSize` (airlift's volumes are sized by
//!   `pack --volume-size`) and `mirror.samples` (images to list under additionalImages),
//!   accepted and ignored with a warning saying so.
//!
//! Refused: Helm charts (`helm`), which airlift does not mirror; and any field it does not
//! know, at any depth.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_yaml_ng::Value;

use crate::catalog::{CatalogFilter, ChannelFilter, PackageFilter, Range};
use crate::error::{usage, Error, Result};
use crate::oci::layout::{read_limited, LayoutSource};
use crate::oci::names::{valid_repository, valid_tag, with_transport, ImageRef, TRANSPORT};
use crate::openshift::graph::{Channel, Kind, Version, OKD_RELEASE_BASE};
use crate::source::registry::Platform;

/// The largest image set file read: a real one is a few kilobytes.
pub const MAX_IMAGESET_FILE: u64 = 1 << 20;
/// Where `version:` releases are taken from when `releaseImageBase` is not given.
pub const DEFAULT_RELEASE_BASE: &str = "quay.io/openshift-release-dev/ocp-release";

const API_VERSIONS: [&str; 2] = ["mirror.openshift.io/v1alpha2", "mirror.openshift.io/v2alpha1"];

/// Which of oc-mirror's files a document is: the image set to mirror, or (oc-mirror v2's
/// `DeleteImageSetConfiguration`, [`crate::openshift::deleteset`]) the images to delete.
/// Both describe images the same way; a delete file has no blocked images or signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Mirror,
    Delete,
}

impl Purpose {
    fn kind(self) -> &'static str {
        match self {
            Purpose::Mirror => "ImageSetConfiguration",
            Purpose::Delete => "DeleteImageSetConfiguration",
        }
    }

    /// What the file is called in messages.
    fn noun(self) -> &'static str {
        match self {
            Purpose::Mirror => "an image set file",
            Purpose::Delete => "a delete file",
        }
    }

    /// The section that lists the images: `mirror` or `delete`.
    fn section(self) -> &'static str {
        match self {
            Purpose::Mirror => "mirror",
            Purpose::Delete => "delete",
        }
    }

    /// A delete file exists only in oc-mirror v2.
    fn api_versions(self) -> &'static [&'static str] {
        match self {
            Purpose::Mirror => &API_VERSIONS,
            Purpose::Delete => &API_VERSIONS[1..],
        }
    }
}
/// Architecture names as the file spells them, and as release image tags spell them.
const ARCHITECTURES: [(&str, &str); 5] =
    [("amd64", "x86_64"), ("arm64", "aarch64"), ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("multi", "multi")];

/// What an image set file asks `pack` to carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSet {
    /// Release image references to pack, each as `docker://HOST/REPO:TAG|@DIGEST` (or `oci:…`
    /// passed through), in file order, expanded per architecture.
    pub releases: Vec<String>,
    /// Additional image references (`docker://…`), blocked ones already removed, file order,
    /// no duplicates.
    pub additional: Vec<String>,
    /// Where additional images given `targetRepo`/`targetTag` are mirrored: their reference
    /// (as in `additional`) → `HOST/REPO[:TAG]`, HOST the source's (read by mirror::target).
    pub targets: BTreeMap<String, String>,
    /// Additional images given `platforms`: their reference (as in `additional`) → the
    /// `OS/ARCH[/VARIANT]`s kept of an index, as `pack --platform` keeps them.
    pub platforms: BTreeMap<String, Vec<String>>,
    /// `platform.platforms` (`OS/ARCH[/VARIANT]`): the platforms kept of the (multi)
    /// release images and of their components' indexes; empty for all.
    pub release_platforms: Vec<String>,
    /// `platform.kubeVirtContainer: true`: the architectures (release tag suffixes,
    /// `x86_64`…) whose KubeVirt container image each release's payload names is packed
    /// too; empty when not asked.
    pub kube_virt: Vec<String>,
    /// The blockedImages entries (for checking release components and what catalogs bring).
    pub blocked: Vec<Blocked>,
    /// The operator catalogs (`mirror.operators`), file order, blocked catalogs removed.
    pub operators: Vec<CatalogFilter>,
    /// `mirror.platform.channels`, resolved against the update graph by `pack`.
    pub channels: Channels,
    /// Things accepted but not acted on (e.g. storageConfig), to be printed as warnings.
    pub warnings: Vec<String>,
    /// `mirror.platform.graph: true`: pack the graph-data image ([`crate::openshift::graphdata`]).
    pub graph: bool,
    /// `mirror.signatures`, an airlift extension: `policy` (require, optional, skip: pack's
    /// `--signatures`, which wins) and `keys` (`scope`: a registry or repository the
    /// cosign public key file `key` signs, relative to the image set file).
    pub signatures: Signatures,
}

/// `mirror.signatures`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    pub policy: Option<String>,
    /// (scope, key file).
    pub keys: Vec<(String, PathBuf)>,
}

/// `mirror.platform.channels` with the platform's architectures and release base.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channels {
    /// File order.
    pub list: Vec<Channel>,
    /// As release tags name them (`x86_64`, …); see [`graph_architecture`].
    pub architectures: Vec<&'static str>,
    /// `mirror.platform.releaseImageBase`, when given.
    pub base: Option<String>,
}

impl Channels {
    /// The release image of `version` from `channel` for `arch` (a tag name):
    /// `docker://BASE:VERSION-ARCH` for OCP, `docker://BASE:VERSION` for OKD, whose tags are
    /// the version; BASE is releaseImageBase, else the kind's default.
    pub fn release(&self, channel: &Channel, version: &Version, arch: &str) -> String {
        match channel.kind {
            Kind::Ocp => {
                format!("{TRANSPORT}{}:{version}-{arch}", self.base.as_deref().unwrap_or(DEFAULT_RELEASE_BASE))
            }
            Kind::Okd => format!("{TRANSPORT}{}:{version}", self.base.as_deref().unwrap_or(OKD_RELEASE_BASE)),
        }
    }
}

/// Whether `name` is an architecture as release image tags spell it (`x86_64`, `multi`).
pub fn is_release_architecture(name: &str) -> bool {
    ARCHITECTURES.iter().any(|(_, t)| *t == name)
}

/// The update graph's name (`amd64`) of an architecture as release tags name it (`x86_64`).
pub fn graph_architecture(tag: &str) -> &str {
    ARCHITECTURES.iter().find(|(_, t)| *t == tag).map_or(tag, |(name, _)| name)
}

/// One `blockedImages` entry: a regular expression, searched anywhere in a reference
/// (oc-mirror v2 calls Go's `regexp.MatchString`, which is unanchored).
#[derive(Debug, Clone)]
pub struct Blocked(Regex);

impl Blocked {
    /// Compile an entry as written; a leading `docker://` is dropped (references are
    /// matched without their transport).
    pub fn new(written: &str) -> std::result::Result<Blocked, regex::Error> {
        Regex::new(written.strip_prefix(TRANSPORT).unwrap_or(written)).map(Blocked)
    }
}

impl PartialEq for Blocked {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Blocked {}

impl ImageSet {
    /// Whether `reference` (with or without `docker://`) is blocked: a blocked pattern
    /// matches it, without the transport, as written or in full form
    /// (`docker.io/library/nginx:latest` for `nginx`); one naming both a tag and a digest
    /// also as `REPO:TAG` and as `REPO@DIGEST`, so an entry written either way finds it.
    /// Other transports (`oci:`) and unparsable text never are.
    pub fn is_blocked(&self, reference: &str) -> bool {
        let written = reference.strip_prefix(TRANSPORT).unwrap_or(reference);
        let Ok(image) = ImageRef::parse_name(written) else { return false };
        let repository = format!("{}/{}", image.registry, image.repository);
        let mut forms = vec![written.to_string()];
        forms.extend(image.tag.as_ref().map(|t| format!("{repository}:{t}")));
        forms.extend(image.digest.as_ref().map(|d| format!("{repository}@{d}")));
        if let (Some(t), Some(d)) = (&image.tag, &image.digest) {
            forms.push(format!("{repository}:{t}@{d}"));
        }
        self.blocked.iter().any(|b| forms.iter().any(|f| b.0.is_match(f)))
    }
}

impl ImageSet {
    /// The `mirror.operators` entry to apply: the one whose catalog is `catalog` (with
    /// or without `docker://`), else the only one; `origin` (the file) names the refusal.
    pub fn operator(&self, origin: &str, catalog: Option<&str>) -> Result<&CatalogFilter> {
        let listed = || self.operators.iter().map(|o| o.catalog.as_str()).collect::<Vec<_>>().join(", ");
        match (catalog, &self.operators[..]) {
            (_, []) => Err(usage(format!("{origin}: mirror.operators lists no catalog"))),
            (None, [only]) => Ok(only),
            (None, _) => Err(usage(format!(
                "{origin}: mirror.operators lists several catalogs ({}); choose one with --catalog REF",
                listed()
            ))),
            (Some(c), operators) => operators
                .iter()
                .find(|o| o.catalog == with_transport(c))
                .ok_or_else(|| usage(format!("{origin}: mirror.operators has no catalog {c}; it lists {}", listed()))),
        }
    }
}

/// Read and parse an image set file; every error names the file.
pub fn load(path: &Path) -> Result<ImageSet> {
    load_as(path, Purpose::Mirror)
}

/// Read and parse an image set file or a delete file; every error names the file.
pub fn load_as(path: &Path, purpose: Purpose) -> Result<ImageSet> {
    let origin = path.display().to_string();
    let bytes = read_limited(path, MAX_IMAGESET_FILE)?;
    let text = String::from_utf8(bytes).map_err(|_| usage(format!("{origin}: not UTF-8 text")))?;
    parse_as(&text, &origin, purpose)
}

/// Parse an image set document; `origin` (the file name) starts every error message.
pub fn parse(text: &str, origin: &str) -> Result<ImageSet> {
    parse_as(text, origin, Purpose::Mirror)
}

/// Parse an image set or delete document; `origin` (the file name) starts every error message.
pub fn parse_as(text: &str, origin: &str, purpose: Purpose) -> Result<ImageSet> {
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| usage(format!("{origin}: not a valid YAML document: {e}")))?;
    Reader { origin, warnings: Vec::new(), purpose }.document(&root)
}

/// Walks the document, collecting warnings; errors carry the origin and the field path.
struct Reader<'a> {
    origin: &'a str,
    warnings: Vec<String>,
    purpose: Purpose,
}

/// The fields of one mapping, in file order.
type Fields<'v> = Vec<(&'v str, &'v Value)>;

impl Reader<'_> {
    fn document(mut self, root: &Value) -> Result<ImageSet> {
        let (kind, noun) = (self.purpose.kind(), self.purpose.noun());
        let (section, apis) = (self.purpose.section(), self.purpose.api_versions());
        if !matches!(root, Value::Mapping(_)) {
            return Err(usage(format!(
                "{}: not {noun}: expected a mapping with kind, apiVersion and {section}",
                self.origin
            )));
        }
        let fields = self.fields(root, "")?;
        match field(&fields, "kind") {
            None => return Err(self.error("kind", format!("missing; {noun} says `kind: {kind}`"))),
            Some(v) => {
                let found = self.string(v, "kind")?;
                if found != kind {
                    return Err(self.error("kind", format!("'{found}' is not {kind}, the only kind airlift reads")));
                }
            }
        }
        let supported = format!("use {}", apis.join(" or "));
        match field(&fields, "apiVersion") {
            None => return Err(self.error("apiVersion", format!("missing; {supported}"))),
            Some(v) => {
                let api = self.string(v, "apiVersion")?;
                if !apis.contains(&api) {
                    return Err(self.error("apiVersion", format!("'{api}' is not supported; {supported}")));
                }
            }
        }
        let mut mirror = None;
        let mirroring = self.purpose == Purpose::Mirror;
        for &(key, value) in &fields {
            match key {
                "kind" | "apiVersion" => {}
                _ if key == section => mirror = Some(value),
                "storageConfig" if mirroring => self.warnings.push(format!(
                    "{}: storageConfig: ignored: airlift keeps no oc-mirror metadata; every pack writes a complete bundle",
                    self.origin
                )),
                "archiveSize" if mirroring => self.warnings.push(format!(
                    "{}: archiveSize: ignored: airlift splits a bundle into volumes of `airlift pack --volume-size` instead",
                    self.origin
                )),
                _ if mirroring => {
                    return Err(self.unknown(key, "kind, apiVersion, storageConfig, archiveSize, mirror"))
                }
                _ => return Err(self.unknown(key, &format!("kind, apiVersion, {section}"))),
            }
        }
        match mirror {
            Some(mirror) => self.mirror(mirror),
            None => Err(self.error(section, format!("missing; nothing to {section}"))),
        }
    }

    /// The `mirror` (or `delete`) section.
    fn mirror(mut self, value: &Value) -> Result<ImageSet> {
        let (section, mirroring) = (self.purpose.section(), self.purpose == Purpose::Mirror);
        let mut platform = PlatformSection::default();
        let mut wanted = Vec::new();
        let mut blocked = Vec::new();
        let mut operators = Vec::new();
        let mut signatures = Signatures::default();
        for (key, value) in self.fields(value, section)? {
            let path = format!("{section}.{key}");
            match key {
                "platform" => self.platform(value, &path, &mut platform)?,
                "additionalImages" => {
                    for (i, item) in self.sequence(value, &path)?.iter().enumerate() {
                        wanted.push(self.additional_image(item, &format!("{path}[{i}]"))?);
                    }
                }
                "blockedImages" if mirroring => blocked = self.blocked_images(value, &path)?,
                "operators" => {
                    for (i, item) in self.sequence(value, &path)?.iter().enumerate() {
                        operators.push((format!("{path}[{i}]"), self.operator(item, &format!("{path}[{i}]"))?));
                    }
                }
                "signatures" if mirroring => signatures = self.signatures(value, &path)?,
                "helm" => {
                    return Err(self.error(
                        &path,
                        "Helm charts are not supported by airlift; remove the section (or mirror them with oc-mirror)",
                    ))
                }
                "samples" => self.warnings.push(format!(
                    "{}: {path}: ignored: airlift does not mirror the samples operator's images; list those wanted under mirror.additionalImages",
                    self.origin
                )),
                _ if mirroring => return Err(self.unknown(&path, "platform, operators, additionalImages, blockedImages, samples, signatures")),
                _ => return Err(self.unknown(&path, "platform, operators, additionalImages, samples")),
            }
        }
        let PlatformSection { releases, kube_virt, release_platforms, channels, graph } = platform;
        let mut set =
            ImageSet { blocked, kube_virt, release_platforms, channels, graph, signatures, ..ImageSet::default() };
        let mut additional = Unique::default();
        let wanted_any = !wanted.is_empty();
        for w in wanted {
            if !self.blocked(&set, &w.path, &w.reference) {
                if let Some(target) = w.target {
                    set.targets.insert(w.reference.clone(), target);
                }
                if !w.platforms.is_empty() {
                    set.platforms.insert(w.reference.clone(), w.platforms);
                }
                additional.push(w.image.to_string(), w.reference);
            }
        }
        for (path, filter) in operators {
            if !self.blocked(&set, &path, &filter.catalog) {
                set.operators.push(filter);
            }
        }
        if releases.items.is_empty()
            && set.channels.list.is_empty()
            && additional.items.is_empty()
            && set.operators.is_empty()
        {
            let why = if wanted_any { " (every additional image is blocked)" } else { "" };
            return Err(self.error(
                section,
                format!(
                    "nothing to {section}{why}; list releases under {section}.platform, catalogs under {section}.operators \
                     or images under {section}.additionalImages"
                ),
            ));
        }
        set.releases = releases.items;
        set.additional = additional.items;
        set.warnings = self.warnings;
        Ok(set)
    }

    /// `mirror.blockedImages`: each entry's `name`, a regular expression.
    fn blocked_images(&self, value: &Value, path: &str) -> Result<Vec<Blocked>> {
        let mut blocked = Vec::new();
        for (i, item) in self.sequence(value, path)?.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let name = self.image_name(item, &path)?;
            let pattern = Blocked::new(name).map_err(|e| {
                self.error(&format!("{path}.name"), format!("'{name}' is not a valid regular expression: {e}"))
            })?;
            blocked.push(pattern);
        }
        Ok(blocked)
    }

    /// `mirror.signatures`: `policy` and `keys` (each `scope` and `key`).
    fn signatures(&self, value: &Value, path: &str) -> Result<Signatures> {
        let mut signatures = Signatures::default();
        for (key, value) in self.fields(value, path)? {
            let path = format!("{path}.{key}");
            match key {
                "policy" => match self.string(value, &path)? {
                    p @ ("require" | "optional" | "skip") => signatures.policy = Some(p.to_string()),
                    _ => return Err(self.error(&path, "must be require, optional or skip")),
                },
                "keys" => {
                    let here = Path::new(self.origin).parent().unwrap_or(Path::new(""));
                    for (i, item) in self.sequence(value, &path)?.iter().enumerate() {
                        let path = format!("{path}[{i}]");
                        let (mut scope, mut file) = (None, None);
                        for (k, v) in self.fields(item, &path)? {
                            match k {
                                "scope" => scope = Some(self.string(v, &format!("{path}.scope"))?.to_string()),
                                "key" => file = Some(here.join(self.string(v, &format!("{path}.key"))?)),
                                _ => return Err(self.unknown(&format!("{path}.{k}"), "scope, key")),
                            }
                        }
                        match (scope, file) {
                            (Some(scope), Some(file)) => signatures.keys.push((scope, file)),
                            _ => return Err(self.error(&path, "needs both scope and key")),
                        }
                    }
                }
                _ => return Err(self.unknown(&path, "policy, keys")),
            }
        }
        Ok(signatures)
    }

    /// Whether `set` blocks the image at `path`; a warning says it is skipped.
    fn blocked(&mut self, set: &ImageSet, path: &str, reference: &str) -> bool {
        let blocked = set.is_blocked(reference);
        if blocked {
            self.warnings
                .push(format!("{}: {path}: {reference} is blocked by mirror.blockedImages; skipped", self.origin));
        }
        blocked
    }

    /// Read `mirror.platform`: release images, release channels, KubeVirt images, platforms
    /// and whether it asks for the graph-data image.
    fn platform(&self, value: &Value, path: &str, found: &mut PlatformSection) -> Result<()> {
        let PlatformSection { releases, kube_virt, release_platforms, channels, graph } = found;
        let fields = self.fields(value, path)?;
        let arches;
        (arches, *release_platforms) = self.release_platforms(&fields, path)?;
        let base = match field(&fields, "releaseImageBase") {
            None => None,
            Some(v) => Some(self.release_base(v, &format!("{path}.releaseImageBase"))?),
        };
        // `version:`: one release image per architecture.
        let expand = |version: &str, path: &str, releases: &mut Unique| -> Result<()> {
            let base = base.as_deref().unwrap_or(DEFAULT_RELEASE_BASE);
            for arch in &arches {
                let (reference, image) = self.docker_ref(&format!("{base}:{version}-{arch}"), path)?;
                releases.push(image.to_string(), reference);
            }
            Ok(())
        };
        for &(key, value) in &fields {
            let path = format!("{path}.{key}");
            match key {
                "architectures" | "releaseImageBase" | "platforms" => {}
                "release" => self.release_image(self.string(value, &path)?, &path, releases)?,
                "kubeVirtContainer" => {
                    if self.boolean(value, &path)? {
                        *kube_virt = arches.iter().map(|a| a.to_string()).collect();
                    }
                }
                "releases" => {
                    for (i, item) in self.sequence(value, &path)?.iter().enumerate() {
                        let path = format!("{path}[{i}]");
                        match item {
                            Value::String(s) => self.release_image(s, &path, releases)?,
                            _ => {
                                let version = self.release_version(item, &path)?;
                                expand(version, &format!("{path}.version"), releases)?;
                            }
                        }
                    }
                }
                "channels" => {
                    for (i, item) in self.sequence(value, &path)?.iter().enumerate() {
                        channels.list.push(self.channel(item, &format!("{path}[{i}]"))?);
                    }
                    channels.architectures = arches.clone();
                    channels.base = base.clone();
                }
                "graph" => match value {
                    Value::Bool(b) => *graph = *b,
                    _ => return Err(self.error(&path, "expected true or false")),
                },
                _ => return Err(self.unknown(
                    &path,
                    "architectures, platforms, releaseImageBase, release, releases, kubeVirtContainer, channels, graph",
                )),
            }
        }
        Ok(())
    }

    /// The release tag suffixes `version:` expands to, and `platforms` (oc-mirror v2: they
    /// select from the multi payload; `architectures` are the older way).
    fn release_platforms(&self, fields: &Fields, path: &str) -> Result<(Vec<&'static str>, Vec<String>)> {
        let platforms = match field(fields, "platforms") {
            None => Vec::new(),
            Some(v) => self.platforms(v, &format!("{path}.platforms"))?,
        };
        let arches = match (field(fields, "architectures"), platforms.is_empty()) {
            (None, true) => vec![ARCHITECTURES[0].1],
            (None, false) => vec!["multi"],
            (Some(v), true) => self.architectures(v, &format!("{path}.architectures"))?,
            (Some(_), false) => {
                return Err(self.error(
                    path,
                    "platforms and architectures cannot be used together (as in oc-mirror); keep platforms \
                     (OS/ARCH pairs kept of the multi payload) or architectures (single-architecture payloads)",
                ))
            }
        };
        Ok((arches, platforms))
    }

    /// A release image named by reference (`platform.release`, a string in `releases`):
    /// a registry image, or an OCI layout `oci:DIR[:REF]` (oc-mirror's `oci://DIR`).
    fn release_image(&self, written: &str, path: &str, releases: &mut Unique) -> Result<()> {
        if let Some(source) = self.layout(written, path)? {
            releases.push(source.clone(), source);
            return Ok(());
        }
        let (reference, image) = self.docker_ref(written, path)?;
        releases.push(image.to_string(), reference);
        Ok(())
    }

    /// An OCI layout on disk, `oci:DIR[:REF]` (oc-mirror's `oci://DIR` read as `oci:DIR`),
    /// as airlift names it; `None` for anything else.
    fn layout(&self, written: &str, path: &str) -> Result<Option<String>> {
        let Some(rest) = written.strip_prefix("oci:") else { return Ok(None) };
        let source = format!("oci:{}", rest.strip_prefix("//").unwrap_or(rest));
        LayoutSource::parse(&source).map_err(|e| self.error(path, e))?;
        Ok(Some(source))
    }

    /// One entry of `mirror.operators`: a catalog and its filter.
    fn operator(&mut self, value: &Value, path: &str) -> Result<CatalogFilter> {
        let mut filter = CatalogFilter::default();
        let (mut catalog, mut target_name) = (None, None);
        for (key, value) in self.fields(value, path)? {
            let field = format!("{path}.{key}");
            match key {
                "catalog" => catalog = Some(self.catalog(value, &field)?),
                "full" => filter.full = self.boolean(value, &field)?,
                "skipDependencies" => filter.skip_dependencies = self.boolean(value, &field)?,
                "packages" => {
                    for (i, item) in self.sequence(value, &field)?.iter().enumerate() {
                        filter.packages.push(self.package(item, &format!("{field}[{i}]"))?);
                    }
                }
                "targetCatalog" => filter.target_catalog = Some(self.target_path(value, &field, true)?),
                "targetName" => target_name = Some((field.clone(), self.target_path(value, &field, false)?)),
                "targetTag" => match self.string(value, &field)? {
                    t if valid_tag(t) => filter.target_tag = Some(t.to_string()),
                    t => return Err(self.error(&field, format!("'{t}' is not a valid tag"))),
                },
                "targetCatalogSourceTemplate" => {
                    filter.catalog_source_template = Some(self.non_empty(value, &field)?.to_string())
                }
                "platforms" => filter.platforms = self.platforms(value, &field)?,
                _ => {
                    return Err(self.unknown(
                        &field,
                        "catalog, packages, full, skipDependencies, targetCatalog, targetTag, targetName, \
                         targetCatalogSourceTemplate, platforms",
                    ))
                }
            }
        }
        let (reference, repository) =
            catalog.ok_or_else(|| self.error(&format!("{path}.catalog"), "missing; give the catalog image"))?;
        filter.catalog = reference;
        if let Some((field, name)) = target_name {
            // oc-mirror v1's targetName replaced the last path component; targetCatalog wins.
            let mapped = match repository.rsplit_once('/') {
                Some((namespace, _)) => format!("{namespace}/{name}"),
                None => name,
            };
            let read = match &filter.target_catalog {
                Some(t) => format!("ignored: targetCatalog {t} is given"),
                None => format!("read as targetCatalog: {mapped}"),
            };
            self.warnings.push(format!("{}: {field}: deprecated since oc-mirror 4.13; {read}", self.origin));
            filter.target_catalog.get_or_insert(mapped);
        }
        if filter.full {
            if let Some(i) = filter
                .packages
                .iter()
                .position(|p| !p.range.is_empty() || p.channels.iter().any(|c| !c.range.is_empty()))
            {
                return Err(self.error(
                    &format!("{path}.packages[{i}]"),
                    "a version range cannot be combined with `full: true` (every bundle of the channels); remove one",
                ));
            }
        }
        Ok(filter)
    }

    /// A catalog image: a registry reference (`docker://` optional), or an OCI layout on
    /// disk, `oci:PATH[:REF]` (oc-mirror's `oci://PATH` read as `oci:PATH`). With the
    /// repository path it stands for (a layout's: none).
    fn catalog(&self, value: &Value, path: &str) -> Result<(String, String)> {
        let written = self.string(value, path)?;
        if let Some(source) = self.layout(written, path)? {
            return Ok((source, String::new()));
        }
        let (reference, image) = self.docker_ref(written, path)?;
        Ok((reference, image.repository.to_string()))
    }

    /// One entry of a catalog's `packages`.
    fn package(&self, value: &Value, path: &str) -> Result<PackageFilter> {
        let mut package = PackageFilter::default();
        let mut name = None;
        for (key, value) in self.fields(value, path)? {
            let field = format!("{path}.{key}");
            match key {
                "name" => name = Some(self.non_empty(value, &field)?.to_string()),
                "defaultChannel" => package.default_channel = Some(self.non_empty(value, &field)?.to_string()),
                "channels" => {
                    for (i, item) in self.sequence(value, &field)?.iter().enumerate() {
                        package.channels.push(self.channel_filter(item, &format!("{field}[{i}]"))?);
                    }
                }
                _ if self.range_field(&mut package.range, key, value, &field)? => {}
                _ => {
                    return Err(
                        self.unknown(&field, "name, defaultChannel, minVersion, maxVersion, minBundle, channels")
                    )
                }
            }
        }
        package.name = name.ok_or_else(|| self.error(&format!("{path}.name"), "missing; give the package name"))?;
        self.check_range(&package.range, path)?;
        if !package.range.is_empty() {
            if let Some(i) = package.channels.iter().position(|c| !c.range.is_empty()) {
                return Err(self.error(
                    &format!("{path}.channels[{i}]"),
                    format!(
                        "package {} has a version range and so does its channel {}: give the range on the package or on its channels, not both",
                        package.name, package.channels[i].name
                    ),
                ));
            }
        }
        Ok(package)
    }

    /// One entry of a package's `channels`.
    fn channel_filter(&self, value: &Value, path: &str) -> Result<ChannelFilter> {
        let mut channel = ChannelFilter::default();
        let mut name = None;
        for (key, value) in self.fields(value, path)? {
            let field = format!("{path}.{key}");
            match key {
                "name" => name = Some(self.non_empty(value, &field)?.to_string()),
                _ if self.range_field(&mut channel.range, key, value, &field)? => {}
                _ => return Err(self.unknown(&field, "name, minVersion, maxVersion, minBundle")),
            }
        }
        channel.name = name.ok_or_else(|| self.error(&format!("{path}.name"), "missing; give the channel name"))?;
        self.check_range(&channel.range, path)?;
        Ok(channel)
    }

    /// Read `key` into `range` when it is one of its fields; whether it was.
    fn range_field(&self, range: &mut Range, key: &str, value: &Value, path: &str) -> Result<bool> {
        let slot = match key {
            "minVersion" => &mut range.min_version,
            "maxVersion" => &mut range.max_version,
            "minBundle" => &mut range.min_bundle,
            _ => return Ok(false),
        };
        let text = match value {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(n) => {
                return Err(self.error(path, format!("expected a version string; quote it: \"{n}\"")));
            }
            _ => return Err(self.error(path, "expected a non-empty string")),
        };
        *slot = Some(text);
        Ok(true)
    }

    /// `minBundle` names the minimum itself, so it excludes `minVersion` (as in oc-mirror).
    fn check_range(&self, range: &Range, path: &str) -> Result<()> {
        if range.min_version.is_some() && range.min_bundle.is_some() {
            return Err(self.error(path, "minVersion and minBundle both give the minimum; keep one"));
        }
        Ok(())
    }

    /// `targetCatalog` (`[NAMESPACE/]NAME`) or `targetName` (one path component).
    fn target_path(&self, value: &Value, path: &str, namespaced: bool) -> Result<String> {
        let written = self.string(value, path)?;
        if valid_repository(written) && (namespaced || !written.contains('/')) {
            return Ok(written.to_string());
        }
        let shape = if namespaced { "[NAMESPACE/]NAME" } else { "one NAME" };
        Err(self.error(
            path,
            format!(
                "'{written}' is not {shape} of lowercase path components (letters and digits joined by '.', '_', '__' or '-'), without registry, tag or digest"
            ),
        ))
    }

    /// Per-catalog `platforms`: `{os, architecture[, variant]}` or `OS/ARCH[/VARIANT]`.
    fn platforms(&self, value: &Value, path: &str) -> Result<Vec<String>> {
        let mut platforms = Vec::new();
        for (i, item) in self.sequence(value, path)?.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let written = match item {
                Value::String(s) => s.clone(),
                _ => {
                    let (mut os, mut arch, mut variant) = (None, None, None);
                    for (key, value) in self.fields(item, &path)? {
                        let field = format!("{path}.{key}");
                        match key {
                            "os" => os = Some(self.string(value, &field)?),
                            "architecture" => arch = Some(self.string(value, &field)?),
                            "variant" => variant = Some(self.string(value, &field)?),
                            _ => return Err(self.unknown(&field, "os, architecture, variant")),
                        }
                    }
                    let (Some(os), Some(arch)) = (os, arch) else {
                        return Err(
                            self.error(&path, "give os and architecture, e.g. {os: linux, architecture: amd64}")
                        );
                    };
                    variant.map_or(format!("{os}/{arch}"), |v| format!("{os}/{arch}/{v}"))
                }
            };
            if Platform::parse(&written).is_err() {
                return Err(
                    self.error(&path, format!("'{written}' is not OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"))
                );
            }
            platforms.push(written);
        }
        Ok(platforms)
    }

    fn boolean(&self, value: &Value, path: &str) -> Result<bool> {
        match value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.error(path, "expected true or false")),
        }
    }

    fn non_empty<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        match self.string(value, path)? {
            "" => Err(self.error(path, "empty")),
            s => Ok(s),
        }
    }

    /// The release tag suffix of every listed architecture, in file order.
    fn architectures(&self, value: &Value, path: &str) -> Result<Vec<&'static str>> {
        let items = self.sequence(value, path)?;
        if items.is_empty() {
            return Err(self.error(path, "empty; list at least one architecture, or remove the field for [amd64]"));
        }
        let mut arches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let name = self.string(item, &path)?;
            match ARCHITECTURES.iter().find(|(a, _)| *a == name) {
                Some((_, arch)) if !arches.contains(arch) => arches.push(*arch),
                Some(_) => {}
                None => {
                    return Err(self.error(
                        &path,
                        format!("'{name}' is not a supported architecture; use amd64, arm64, ppc64le, s390x or multi"),
                    ))
                }
            }
        }
        Ok(arches)
    }

    /// `releaseImageBase`: a repository without tag or digest, `docker://` optional.
    fn release_base(&self, value: &Value, path: &str) -> Result<String> {
        let written = self.string(value, path)?;
        let (_, image) = self.docker_ref(written, path)?;
        let tag = ImageRef::parse_written(written).map_err(|e| self.error(path, e))?.tag;
        if tag.is_some() || image.digest.is_some() {
            return Err(self
                .error(path, "give the repository only (no tag or digest): airlift appends VERSION-ARCH as the tag"));
        }
        Ok(written.strip_prefix(TRANSPORT).unwrap_or(written).to_string())
    }

    /// An entry of `releases` that is not a string: `{version: X.Y.Z}`.
    fn release_version<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        if !matches!(value, Value::Mapping(_)) {
            return Err(self.error(path, "expected a release image reference or `version: X.Y.Z`"));
        }
        let mut version = None;
        for (key, value) in self.fields(value, path)? {
            let path = format!("{path}.{key}");
            match key {
                "version" => version = Some(self.version(value, &path)?),
                _ => return Err(self.unknown(&path, "version")),
            }
        }
        version.ok_or_else(|| self.error(&format!("{path}.version"), "missing; give `version: X.Y.Z`"))
    }

    /// One `mirror.platform.channels` entry, resolved at pack time against the update graph.
    fn channel(&self, value: &Value, path: &str) -> Result<Channel> {
        let mut channel = Channel::default();
        let flag = |value: &Value, field: &str| match value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.error(field, "expected true or false")),
        };
        for (key, value) in self.fields(value, path)? {
            let field = format!("{path}.{key}");
            match key {
                "name" => channel.name = self.string(value, &field)?.to_string(),
                "type" => {
                    channel.kind = match self.string(value, &field)? {
                        "ocp" => Kind::Ocp,
                        "okd" => Kind::Okd,
                        other => {
                            return Err(self.error(&field, format!("'{other}' is not a release type; use ocp or okd")))
                        }
                    }
                }
                "minVersion" => channel.min = Some(self.graph_version(value, &field)?),
                "maxVersion" => channel.max = Some(self.graph_version(value, &field)?),
                "full" => channel.full = flag(value, &field)?,
                "shortestPath" => channel.shortest_path = flag(value, &field)?,
                _ => return Err(self.unknown(&field, "name, type, minVersion, maxVersion, full, shortestPath")),
            }
        }
        if channel.name.is_empty() {
            return Err(self.error(&format!("{path}.name"), "missing; give the channel name, e.g. stable-4.16"));
        }
        if channel.name.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')) {
            return Err(self
                .error(&format!("{path}.name"), format!("'{}' is not a channel name like stable-4.16", channel.name)));
        }
        if let (Some(min), Some(max)) = (&channel.min, &channel.max) {
            if min > max {
                return Err(self.error(path, format!("minVersion {min} is above maxVersion {max}")));
            }
        }
        Ok(channel)
    }

    /// A `minVersion`/`maxVersion` of a channel.
    fn graph_version(&self, value: &Value, path: &str) -> Result<Version> {
        let text = self.version(value, path)?;
        Version::parse(text).ok_or_else(|| self.error(path, format!("'{text}' is not a release version like 4.16.3")))
    }

    /// A release version: `X.Y.Z`, optionally `-SUFFIX` (`4.16.3`, `4.17.0-rc.1`).
    fn version<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        let ok = |s: &str| {
            let (core, suffix) = s.split_once('-').map_or((s, None), |(c, x)| (c, Some(x)));
            let parts: Vec<&str> = core.split('.').collect();
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && suffix.map_or(true, |x| {
                    !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                })
        };
        match value {
            Value::String(s) if ok(s) => Ok(s),
            Value::String(s) => {
                Err(self.error(path, format!("'{s}' is not a release version like 4.16.3 or 4.17.0-rc.1")))
            }
            _ => Err(self.error(path, "expected a release version like 4.16.3 (quote it: \"4.16.3\")")),
        }
    }

    /// An `additionalImages` entry.
    fn additional_image(&self, value: &Value, path: &str) -> Result<Wanted> {
        if !matches!(value, Value::Mapping(_)) {
            return Err(self.error(path, "expected `- name: REFERENCE`"));
        }
        let (mut name, mut repo, mut tag, mut platforms) = (None, None, None, Vec::new());
        for (key, value) in self.fields(value, path)? {
            let field = format!("{path}.{key}");
            match key {
                "name" => name = Some(self.string(value, &field)?),
                "targetRepo" => repo = Some(self.target_path(value, &field, true)?),
                "targetTag" => match self.string(value, &field)? {
                    t if valid_tag(t) => tag = Some(t.to_string()),
                    t => return Err(self.error(&field, format!("'{t}' is not a valid tag"))),
                },
                "platforms" => platforms = self.platforms(value, &field)?,
                _ => return Err(self.unknown(&field, "name, targetRepo, targetTag, platforms")),
            }
        }
        let name = name.ok_or_else(|| self.error(&format!("{path}.name"), "missing; give the image reference"))?;
        let (reference, image) = self.docker_ref(name, &format!("{path}.name"))?;
        let target = (repo.is_some() || tag.is_some()).then(|| {
            let repository = repo.unwrap_or_else(|| image.repository.to_string());
            match tag.or_else(|| image.tag.as_ref().map(|t| t.to_string())) {
                Some(tag) => format!("{}/{repository}:{tag}", image.registry),
                None => format!("{}/{repository}", image.registry),
            }
        });
        Ok(Wanted { path: path.to_string(), reference, image, target, platforms })
    }

    /// The `name` of a `blockedImages` entry.
    fn image_name<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        if !matches!(value, Value::Mapping(_)) {
            return Err(self.error(path, "expected `- name: REFERENCE`"));
        }
        let mut name = None;
        for (key, value) in self.fields(value, path)? {
            let path = format!("{path}.{key}");
            match key {
                "name" => name = Some(self.string(value, &path)?),
                _ => return Err(self.unknown(&path, "name")),
            }
        }
        name.ok_or_else(|| self.error(&format!("{path}.name"), "missing; give the image reference"))
    }

    /// A registry reference, `docker://` optional: returns it with `docker://` and parsed.
    fn docker_ref(&self, written: &str, path: &str) -> Result<(String, ImageRef)> {
        if !written.starts_with(TRANSPORT) && (written.contains("://") || written.starts_with("oci:")) {
            return Err(
                self.error(path, format!("'{written}': only registry references (docker://) are supported here"))
            );
        }
        let reference = with_transport(written);
        let image = ImageRef::parse(&reference).map_err(|e| self.error(path, e))?;
        Ok((reference, image))
    }

    fn fields<'v>(&self, value: &'v Value, path: &str) -> Result<Fields<'v>> {
        let map = match value {
            Value::Mapping(map) => map,
            Value::Null => return Ok(Vec::new()),
            _ => return Err(self.error(path, "expected a mapping (`key: value` lines)")),
        };
        map.iter()
            .map(|(k, v)| match k {
                Value::String(k) => Ok((k.as_str(), v)),
                _ => Err(self.error(path, format!("key {} is not a string", yaml_inline(k)))),
            })
            .collect()
    }

    fn sequence<'v>(&self, value: &'v Value, path: &str) -> Result<&'v [Value]> {
        match value {
            Value::Sequence(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.error(path, "expected a list (`- …` lines)")),
        }
    }

    fn string<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str> {
        match value {
            Value::String(s) => Ok(s),
            _ => Err(self.error(path, format!("expected a string, found {}", yaml_inline(value)))),
        }
    }

    fn error(&self, path: &str, msg: impl fmt::Display) -> Error {
        usage(format!("{}: {path}: {msg}", self.origin))
    }

    fn unknown(&self, path: &str, supported: &str) -> Error {
        self.error(path, format!("unknown field; remove it (airlift reads {supported} here)"))
    }
}

fn field<'v>(fields: &Fields<'v>, name: &str) -> Option<&'v Value> {
    fields.iter().find(|(k, _)| *k == name).map(|&(_, v)| v)
}

/// A value as it would appear in the file, kept short, for messages.
fn yaml_inline(value: &Value) -> String {
    let text = serde_yaml_ng::to_string(value).unwrap_or_default();
    let text = text.trim_end();
    if text.contains('\n') || text.len() > 40 {
        "a mapping or list".to_string()
    } else {
        format!("'{text}'")
    }
}

/// What `mirror.platform` asks for.
#[derive(Default)]
struct PlatformSection {
    releases: Unique,
    kube_virt: Vec<String>,
    release_platforms: Vec<String>,
    channels: Channels,
    graph: bool,
}

/// An `additionalImages` entry as read: its path in the file, its reference
/// (`docker://…`) and parsed image, where `targetRepo`/`targetTag` send it
/// (`HOST/REPO[:TAG]`), and its `platforms` (all when empty).
struct Wanted {
    path: String,
    reference: String,
    image: ImageRef,
    target: Option<String>,
    platforms: Vec<String>,
}

/// References kept once, in first-seen order, compared by a normalised key.
#[derive(Default)]
struct Unique {
    items: Vec<String>,
    seen: HashSet<String>,
}

impl Unique {
    fn push(&mut self, key: String, item: String) {
        if self.seen.insert(key) {
            self.items.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "imageset.yaml";
    const HEADER: &str = "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v1alpha2\n";
    const OCP: &str = "docker://quay.io/openshift-release-dev/ocp-release";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// The error message for a document.
    fn refusal(text: &str) -> String {
        match parse(text, ORIGIN) {
            Ok(set) => panic!("accepted: {set:?}\n{text}"),
            Err(e) => {
                assert_eq!(e.status(), crate::error::Status::Usage, "{e}");
                e.to_string()
            }
        }
    }

    /// The error message for a `mirror:` section under a valid header.
    fn refused(mirror: &str) -> String {
        refusal(&format!("{HEADER}mirror:\n{mirror}"))
    }

    #[test]
    fn graph_true_asks_for_the_graph_data_image() {
        let set = |graph: &str| {
            parse(&format!("{HEADER}mirror:\n  platform:\n{graph}    releases: [{{version: 4.16.3}}]\n"), ORIGIN)
                .unwrap()
        };
        assert!(set("    graph: true\n").graph);
        assert!(!set("    graph: false\n").graph);
        assert!(!set("").graph);
        assert_eq!(
            refused("  platform:\n    graph: yes please\n    releases: [{version: 4.16.3}]\n"),
            "imageset.yaml: mirror.platform.graph: expected true or false"
        );
    }

    #[test]
    fn full_file() {
        let tool = format!("docker://quay.io/ns/tool@{}", digest('a'));
        let text = format!(
            "kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
storageConfig:
  local:
    path: ./metadata
mirror:
  platform:
    architectures: [amd64, arm64]
    releases:
      - quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64
      - version: 4.16.4
      - docker://quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64
    channels:
      - name: stable-4.16
        type: ocp
        minVersion: 4.16.5
        maxVersion: 4.16.5
        full: false
      - name: fast-4.16
        maxVersion: 4.16.4
    graph: false
  additionalImages:
    - name: registry.redhat.io/ubi9/ubi:latest
    - name: {tool}
    - name: registry.redhat.io/ubi9/ubi-minimal:9.4
    - name: registry.redhat.io/ubi9/ubi
  blockedImages:
    - name: registry.redhat.io/ubi9/ubi-minimal
    - name: quay.io/ns/tool:old
"
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(
            set,
            ImageSet {
                releases: vec![
                    format!("{OCP}:4.16.3-x86_64"),
                    format!("{OCP}:4.16.4-x86_64"),
                    format!("{OCP}:4.16.4-aarch64"),
                ],
                channels: Channels {
                    list: vec![
                        Channel {
                            name: "stable-4.16".into(),
                            min: Version::parse("4.16.5"),
                            max: Version::parse("4.16.5"),
                            ..Channel::default()
                        },
                        Channel { name: "fast-4.16".into(), max: Version::parse("4.16.4"), ..Channel::default() },
                    ],
                    architectures: vec!["x86_64", "aarch64"],
                    base: None,
                },
                additional: vec!["docker://registry.redhat.io/ubi9/ubi:latest".to_string(), tool],
                targets: BTreeMap::new(),
                platforms: BTreeMap::new(),
                kube_virt: vec![],
                release_platforms: vec![],
                blocked: patterns(&["registry.redhat.io/ubi9/ubi-minimal", "quay.io/ns/tool:old"]),
                operators: vec![],
                signatures: Signatures::default(),
                warnings: vec![
                    "imageset.yaml: storageConfig: ignored: airlift keeps no oc-mirror metadata; every pack writes a complete bundle"
                        .to_string(),
                    "imageset.yaml: mirror.additionalImages[2]: docker://registry.redhat.io/ubi9/ubi-minimal:9.4 is blocked by mirror.blockedImages; skipped"
                        .to_string(),
                ],
                graph: false,
            }
        );
    }

    #[test]
    fn platform_in_file_order_with_base_and_defaults() {
        let text = format!(
            "{HEADER}mirror:
  platform:
    channels:
      - name: okd-4.15
        type: okd
        minVersion: 4.15.0-rc.1
    releaseImageBase: docker://quay.io/openshift/okd
    releases:
      - oci:/srv/releases:4.15.0
      - version: 4.15.2
"
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(
            set,
            ImageSet {
                releases: vec![
                    "oci:/srv/releases:4.15.0".to_string(),
                    "docker://quay.io/openshift/okd:4.15.2-x86_64".to_string(),
                ],
                channels: Channels {
                    list: vec![Channel {
                        name: "okd-4.15".into(),
                        kind: Kind::Okd,
                        min: Version::parse("4.15.0-rc.1"),
                        ..Channel::default()
                    }],
                    architectures: vec!["x86_64"],
                    base: Some("quay.io/openshift/okd".into()),
                },
                ..ImageSet::default()
            }
        );
        let text = format!("{HEADER}mirror:\n  platform:\n    architectures: [multi, s390x, ppc64le]\n    releases: [{{version: 4.17.0-ec.2}}]\n");
        assert_eq!(
            parse(&text, ORIGIN).unwrap().releases,
            [
                format!("{OCP}:4.17.0-ec.2-multi"),
                format!("{OCP}:4.17.0-ec.2-s390x"),
                format!("{OCP}:4.17.0-ec.2-ppc64le"),
            ]
        );
        let text = format!("{HEADER}mirror:\n  additionalImages:\n    - name: nginx\n");
        assert_eq!(
            parse(&text, ORIGIN).unwrap(),
            ImageSet { additional: vec!["docker://nginx".to_string()], ..ImageSet::default() }
        );
    }

    #[test]
    fn operators_in_both_spellings() {
        let text = "kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  operators:
    - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.16
      targetCatalog: my/redhat-operators
      targetTag: v1
      targetCatalogSourceTemplate: ./template.yaml
      skipDependencies: true
      platforms: [{os: linux, architecture: amd64}, linux/arm64/v8]
      packages:
        - name: aws-load-balancer-operator
          defaultChannel: stable-v1
          channels:
            - name: stable-v1
              minVersion: \"1.1.0\"
              maxVersion: 1.2.0
            - name: stable-v0
        - name: odf-operator
          minVersion: 4.16.1
    - catalog: docker://quay.io/ns/catalog@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      full: true
";
        let set = parse(text, ORIGIN).unwrap();
        let range = |min: Option<&str>, max: Option<&str>| Range {
            min_version: min.map(str::to_string),
            max_version: max.map(str::to_string),
            min_bundle: None,
        };
        assert_eq!(
            set.operators,
            [
                CatalogFilter {
                    catalog: "docker://registry.redhat.io/redhat/redhat-operator-index:v4.16".into(),
                    full: false,
                    packages: vec![
                        PackageFilter {
                            name: "aws-load-balancer-operator".into(),
                            default_channel: Some("stable-v1".into()),
                            range: Range::default(),
                            channels: vec![
                                ChannelFilter { name: "stable-v1".into(), range: range(Some("1.1.0"), Some("1.2.0")) },
                                ChannelFilter { name: "stable-v0".into(), range: Range::default() },
                            ],
                        },
                        PackageFilter {
                            name: "odf-operator".into(),
                            range: range(Some("4.16.1"), None),
                            ..PackageFilter::default()
                        },
                    ],
                    skip_dependencies: true,
                    target_catalog: Some("my/redhat-operators".into()),
                    target_tag: Some("v1".into()),
                    platforms: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
                    catalog_source_template: Some("./template.yaml".into()),
                },
                CatalogFilter {
                    catalog: format!("docker://quay.io/ns/catalog@{}", digest('a')),
                    full: true,
                    ..CatalogFilter::default()
                },
            ]
        );
        // v1alpha2: minBundle, and targetName read as the targetCatalog it stands for.
        let text = format!(
            "{HEADER}mirror:\n  operators:\n    - catalog: quay.io/ns/sub/index:v1\n      targetName: mine\n      packages:\n        - {{name: a, minBundle: a.v1.0.0}}\n"
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(set.operators[0].target_catalog.as_deref(), Some("ns/sub/mine"));
        assert_eq!(set.operators[0].packages[0].range.min_bundle.as_deref(), Some("a.v1.0.0"));
        assert_eq!(
            set.warnings,
            ["imageset.yaml: mirror.operators[0].targetName: deprecated since oc-mirror 4.13; read as targetCatalog: ns/sub/mine"]
        );
        // A blocked catalog is skipped, with a warning; alone, it leaves nothing to mirror.
        let blocked = "  operators: [{catalog: quay.io/ns/index:v1}]\n  blockedImages: [{name: quay.io/ns/index}]\n";
        assert!(refused(blocked).starts_with("imageset.yaml: mirror: nothing to mirror"));
        let set = parse(&format!("{HEADER}mirror:\n{blocked}  additionalImages: [{{name: quay.io/a/b:1}}]\n"), ORIGIN)
            .unwrap();
        assert!(set.operators.is_empty());
        assert_eq!(
            set.warnings,
            ["imageset.yaml: mirror.operators[0]: docker://quay.io/ns/index:v1 is blocked by mirror.blockedImages; skipped"]
        );
    }

    #[test]
    fn operator_entries_are_chosen_by_catalog() {
        let one = |c: &str| CatalogFilter { catalog: c.to_string(), ..CatalogFilter::default() };
        let mut set = ImageSet { operators: vec![one("docker://quay.io/a/index:v1")], ..ImageSet::default() };
        assert_eq!(set.operator(ORIGIN, None).unwrap().catalog, "docker://quay.io/a/index:v1");
        assert_eq!(set.operator(ORIGIN, Some("quay.io/a/index:v1")).unwrap().catalog, "docker://quay.io/a/index:v1");
        set.operators.push(one("docker://quay.io/b/index:v1"));
        let e = set.operator(ORIGIN, None).unwrap_err();
        assert_eq!(e.status(), crate::error::Status::Usage);
        assert_eq!(
            e.to_string(),
            "imageset.yaml: mirror.operators lists several catalogs (docker://quay.io/a/index:v1, docker://quay.io/b/index:v1); choose one with --catalog REF"
        );
        assert_eq!(
            set.operator(ORIGIN, Some("docker://quay.io/b/index:v1")).unwrap().catalog,
            "docker://quay.io/b/index:v1"
        );
        assert!(set.operator(ORIGIN, Some("quay.io/c/index:v1")).unwrap_err().to_string().starts_with(
            "imageset.yaml: mirror.operators has no catalog quay.io/c/index:v1; it lists docker://quay.io/a/"
        ));
        assert_eq!(
            ImageSet::default().operator(ORIGIN, None).unwrap_err().to_string(),
            "imageset.yaml: mirror.operators lists no catalog"
        );
    }

    #[test]
    fn refuses_bad_operator_entries() {
        let op = |entry: &str| refused(&format!("  operators:\n    - catalog: quay.io/ns/index:v1\n{entry}"));
        assert_eq!(
            op("      packages:\n        - name: a\n          minVersion: 1.0.0\n          channels: [{name: stable, maxVersion: 2.0.0}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0].channels[0]: package a has a version range and so does its channel stable: give the range on the package or on its channels, not both"
        );
        assert_eq!(
            op("      full: true\n      packages:\n        - name: a\n          channels: [{name: stable, maxVersion: 2.0.0}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0]: a version range cannot be combined with `full: true` (every bundle of the channels); remove one"
        );
        assert_eq!(
            op("      packages: [{name: a, minVersion: 1.0.0, minBundle: a.v1}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0]: minVersion and minBundle both give the minimum; keep one"
        );
        assert_eq!(
            op("      packages: [{name: a, minVersion: 1.2}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0].minVersion: expected a version string; quote it: \"1.2\""
        );
        assert_eq!(
            op("      packages: [{name: a, channels: [{minVersion: 1.0.0}]}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0].channels[0].name: missing; give the channel name"
        );
        assert_eq!(
            op("      packages: [{name: a, version: 1.0.0}]\n"),
            "imageset.yaml: mirror.operators[0].packages[0].version: unknown field; remove it (airlift reads name, defaultChannel, minVersion, maxVersion, minBundle, channels here)"
        );
        assert_eq!(
            op("      headsOnly: true\n"),
            "imageset.yaml: mirror.operators[0].headsOnly: unknown field; remove it (airlift reads catalog, packages, full, skipDependencies, targetCatalog, targetTag, targetName, targetCatalogSourceTemplate, platforms here)"
        );
        assert_eq!(
            op("      targetCatalog: quay.io/x:1\n"),
            "imageset.yaml: mirror.operators[0].targetCatalog: 'quay.io/x:1' is not [NAMESPACE/]NAME of lowercase path components (letters and digits joined by '.', '_', '__' or '-'), without registry, tag or digest"
        );
        assert!(op("      targetName: a/b\n")
            .starts_with("imageset.yaml: mirror.operators[0].targetName: 'a/b' is not one NAME"));
        assert_eq!(
            op("      targetTag: \"-x\"\n"),
            "imageset.yaml: mirror.operators[0].targetTag: '-x' is not a valid tag"
        );
        assert_eq!(
            op("      platforms: [{os: linux}]\n"),
            "imageset.yaml: mirror.operators[0].platforms[0]: give os and architecture, e.g. {os: linux, architecture: amd64}"
        );
        assert_eq!(
            op("      platforms: [amd64]\n"),
            "imageset.yaml: mirror.operators[0].platforms[0]: 'amd64' is not OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"
        );
        assert_eq!(op("      full: yes please\n"), "imageset.yaml: mirror.operators[0].full: expected true or false");
        assert_eq!(
            refused("  operators:\n    - full: true\n"),
            "imageset.yaml: mirror.operators[0].catalog: missing; give the catalog image"
        );
        // oc-mirror's `oci://PATH` is read as airlift's `oci:PATH`.
        for (written, read) in [("oci:///srv/catalog", "oci:/srv/catalog"), ("oci:rel/index:v1", "oci:rel/index:v1")] {
            let set = parse(&format!("{HEADER}mirror:\n  operators:\n    - catalog: {written}\n"), ORIGIN).unwrap();
            assert_eq!(set.operators[0].catalog, read);
        }
        assert_eq!(
            refused("  operators:\n    - catalog: 'oci:'\n"),
            "imageset.yaml: mirror.operators[0].catalog: source 'oci:' names no layout directory"
        );
    }

    #[test]
    fn refuses_what_oc_mirror_alone_does() {
        assert_eq!(
            refused("  helm:\n    repositories: []\n"),
            "imageset.yaml: mirror.helm: Helm charts are not supported by airlift; remove the section (or mirror them with oc-mirror)"
        );
    }

    #[test]
    fn additional_images_with_target_repo_and_tag() {
        let text = format!(
            "{HEADER}mirror:\n  additionalImages:\n\
             \x20   - {{name: quay.io/ns/app:1.0, targetRepo: mirror/app}}\n\
             \x20   - {{name: 'quay.io/ns/tool@{d}', targetTag: v2}}\n\
             \x20   - {{name: quay.io/ns/both:1, targetRepo: x/y, targetTag: t}}\n\
             \x20   - {{name: quay.io/ns/plain:1, platforms: [linux/arm64, {{os: linux, architecture: s390x}}]}}\n",
            d = digest('a')
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(set.additional.len(), 4);
        let targets: Vec<(&str, &str)> = set.targets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let tool = format!("docker://quay.io/ns/tool@{}", digest('a'));
        assert_eq!(
            targets,
            vec![
                ("docker://quay.io/ns/app:1.0", "quay.io/mirror/app:1.0"),
                ("docker://quay.io/ns/both:1", "quay.io/x/y:t"),
                (tool.as_str(), "quay.io/ns/tool:v2"),
            ]
        );
        let platforms: Vec<(&str, &[String])> = set.platforms.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
        assert_eq!(
            platforms,
            [("docker://quay.io/ns/plain:1", &["linux/arm64".to_string(), "linux/s390x".into()][..])]
        );
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1, platforms: [arm64]}]\n"),
            "imageset.yaml: mirror.additionalImages[0].platforms[0]: 'arm64' is not OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"
        );
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1, targetRepo: 'Bad/Repo'}]\n"),
            "imageset.yaml: mirror.additionalImages[0].targetRepo: 'Bad/Repo' is not [NAMESPACE/]NAME of lowercase path components (letters and digits joined by '.', '_', '__' or '-'), without registry, tag or digest"
        );
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1, targetTag: 'a/b'}]\n"),
            "imageset.yaml: mirror.additionalImages[0].targetTag: 'a/b' is not a valid tag"
        );
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1, tag: x}]\n"),
            "imageset.yaml: mirror.additionalImages[0].tag: unknown field; remove it (airlift reads name, targetRepo, targetTag, platforms here)"
        );
    }

    #[test]
    fn platform_release_names_one_release_image() {
        let text = format!(
            "{HEADER}mirror:\n  platform:\n    release: quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64\n\
             \x20   releases: ['quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64', 'oci:///srv/rel:4.16.4']\n"
        );
        assert_eq!(
            parse(&text, ORIGIN).unwrap().releases,
            vec![format!("{OCP}:4.16.3-x86_64"), "oci:/srv/rel:4.16.4".to_string()]
        );
        let text = format!("{HEADER}mirror:\n  platform:\n    release: 'oci://rel-dir'\n");
        assert_eq!(parse(&text, ORIGIN).unwrap().releases, vec!["oci:rel-dir".to_string()]);
        assert!(refused("  platform:\n    release: 'quay.io/a/B:1'\n")
            .starts_with("imageset.yaml: mirror.platform.release: bad image reference"));
        assert_eq!(
            refused("  platform:\n    release: [a]\n"),
            "imageset.yaml: mirror.platform.release: expected a string, found '- a'"
        );
    }

    #[test]
    fn platform_platforms_select_from_the_multi_payload() {
        let text = format!(
            "{HEADER}mirror:\n  platform:\n    platforms: [{{os: linux, architecture: arm64}}, linux/amd64]\n\
             \x20   kubeVirtContainer: true\n    releases: [{{version: 4.16.3}}]\n"
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(set.release_platforms, ["linux/arm64", "linux/amd64"]);
        assert_eq!(set.releases, [format!("{OCP}:4.16.3-multi")]);
        assert_eq!(set.kube_virt, ["multi"]);
        assert_eq!(
            refused("  platform:\n    architectures: [amd64]\n    platforms: [linux/amd64]\n"),
            "imageset.yaml: mirror.platform: platforms and architectures cannot be used together (as in oc-mirror); \
             keep platforms (OS/ARCH pairs kept of the multi payload) or architectures (single-architecture payloads)"
        );
        assert_eq!(
            refused("  platform:\n    platforms: [{os: linux}]\n"),
            "imageset.yaml: mirror.platform.platforms[0]: give os and architecture, e.g. {os: linux, architecture: amd64}"
        );
    }

    #[test]
    fn kubevirt_container_follows_the_architectures() {
        let read =
            |platform: &str| parse(&format!("{HEADER}mirror:\n  platform:\n{platform}"), ORIGIN).unwrap().kube_virt;
        let release = "    releases: [{version: 4.16.3}]\n";
        assert_eq!(read(&format!("    kubeVirtContainer: true\n{release}")), ["x86_64"]);
        assert_eq!(
            read(&format!("    architectures: [amd64, s390x]\n    kubeVirtContainer: true\n{release}")),
            ["x86_64", "s390x"]
        );
        assert!(read(&format!("    kubeVirtContainer: false\n{release}")).is_empty());
        assert_eq!(
            refused("  platform:\n    kubeVirtContainer: yes please\n"),
            "imageset.yaml: mirror.platform.kubeVirtContainer: expected true or false"
        );
    }

    #[test]
    fn archive_size_and_samples_are_ignored_with_a_warning() {
        let text = format!(
            "{HEADER}archiveSize: 4\nmirror:\n  samples:\n    - name: ruby\n  additionalImages: [{{name: quay.io/a/b:1}}]\n"
        );
        let set = parse(&text, ORIGIN).unwrap();
        assert_eq!(set.additional, vec!["docker://quay.io/a/b:1".to_string()]);
        assert_eq!(
            set.warnings,
            vec![
                "imageset.yaml: archiveSize: ignored: airlift splits a bundle into volumes of `airlift pack --volume-size` instead",
                "imageset.yaml: mirror.samples: ignored: airlift does not mirror the samples operator's images; list those wanted under mirror.additionalImages",
            ]
        );
    }

    #[test]
    fn channels_take_every_rule_and_refuse_bad_entries() {
        let text = format!(
            "{HEADER}mirror:\n  platform:\n    channels:\n      - {{name: stable-4.16, full: true, shortestPath: false}}\n      - {{name: eus-4.16, type: ocp, minVersion: 4.16.3, maxVersion: 4.16.8, shortestPath: true}}\n"
        );
        let list = parse(&text, ORIGIN).unwrap().channels.list;
        assert_eq!(
            list,
            [
                Channel { name: "stable-4.16".into(), full: true, ..Channel::default() },
                Channel {
                    name: "eus-4.16".into(),
                    min: Version::parse("4.16.3"),
                    max: Version::parse("4.16.8"),
                    shortest_path: true,
                    ..Channel::default()
                },
            ]
        );
        assert_eq!(
            refused(
                "  platform:\n    channels:\n      - {name: stable-4.16, minVersion: 4.16.9, maxVersion: 4.16.8}\n"
            ),
            "imageset.yaml: mirror.platform.channels[0]: minVersion 4.16.9 is above maxVersion 4.16.8"
        );
        assert_eq!(
            refused("  platform:\n    channels:\n      - {name: stable-4.16, full: yes please}\n"),
            "imageset.yaml: mirror.platform.channels[0].full: expected true or false"
        );
        assert_eq!(
            refused("  platform:\n    channels:\n      - {name: 'stable 4.16&x=1'}\n"),
            "imageset.yaml: mirror.platform.channels[0].name: 'stable 4.16&x=1' is not a channel name like stable-4.16"
        );
        assert_eq!(
            refused("  platform:\n    channels:\n      - {name: x, type: rhcos, minVersion: 4.15.0}\n"),
            "imageset.yaml: mirror.platform.channels[0].type: 'rhcos' is not a release type; use ocp or okd"
        );
        assert_eq!(
            refused("  platform:\n    channels:\n      - {minVersion: 4.15.0}\n"),
            "imageset.yaml: mirror.platform.channels[0].name: missing; give the channel name, e.g. stable-4.16"
        );
    }

    #[test]
    fn channel_releases_use_the_kind_base_and_architecture() {
        let channels = Channels { architectures: vec!["aarch64"], ..Channels::default() };
        let v = Version::parse("4.16.3").unwrap();
        let ocp = Channel::default();
        let okd = Channel { kind: Kind::Okd, ..Channel::default() };
        assert_eq!(channels.release(&ocp, &v, "aarch64"), format!("{OCP}:4.16.3-aarch64"));
        assert_eq!(channels.release(&okd, &v, "aarch64"), "docker://quay.io/openshift/okd:4.16.3");
        let based = Channels { base: Some("mirror.example/ocp/release".into()), ..channels };
        assert_eq!(based.release(&ocp, &v, "x86_64"), "docker://mirror.example/ocp/release:4.16.3-x86_64");
        assert_eq!(graph_architecture("aarch64"), "arm64");
        assert_eq!(graph_architecture("multi"), "multi");
    }

    #[test]
    fn refuses_unknown_fields_at_every_depth() {
        assert_eq!(
            refusal(&format!("{HEADER}spec: {{}}\nmirror: {{}}\n")),
            "imageset.yaml: spec: unknown field; remove it (airlift reads kind, apiVersion, storageConfig, archiveSize, mirror here)"
        );
        assert_eq!(
            refused("  xyz: 1\n"),
            "imageset.yaml: mirror.xyz: unknown field; remove it (airlift reads platform, operators, additionalImages, blockedImages, samples, signatures here)"
        );
        assert_eq!(
            refused("  platform:\n    xyz: 1\n"),
            "imageset.yaml: mirror.platform.xyz: unknown field; remove it (airlift reads architectures, platforms, releaseImageBase, release, releases, kubeVirtContainer, channels, graph here)"
        );
        assert_eq!(
            refused("  platform:\n    channels:\n      - {name: stable-4.16, minVersion: 4.16.3, platform: x}\n"),
            "imageset.yaml: mirror.platform.channels[0].platform: unknown field; remove it (airlift reads name, type, minVersion, maxVersion, full, shortestPath here)"
        );
        assert_eq!(
            refused("  platform:\n    releases:\n      - {version: 4.16.3, arch: amd64}\n"),
            "imageset.yaml: mirror.platform.releases[0].arch: unknown field; remove it (airlift reads version here)"
        );
        assert_eq!(
            refused("  additionalImages:\n    - name: quay.io/a/b:1\n    - name: quay.io/a/c:1\n    - name: quay.io/a/d:1\n      xyz: true\n"),
            "imageset.yaml: mirror.additionalImages[2].xyz: unknown field; remove it (airlift reads name, targetRepo, targetTag, platforms here)"
        );
        assert_eq!(
            refused(
                "  additionalImages: [{name: quay.io/a/b:1}]\n  blockedImages: [{name: quay.io/a/c, regex: true}]\n"
            ),
            "imageset.yaml: mirror.blockedImages[0].regex: unknown field; remove it (airlift reads name here)"
        );
    }

    #[test]
    fn refuses_bad_header() {
        let body = "mirror:\n  additionalImages: [{name: quay.io/a/b:1}]\n";
        assert_eq!(
            refusal(&format!("kind: Deployment\napiVersion: mirror.openshift.io/v1alpha2\n{body}")),
            "imageset.yaml: kind: 'Deployment' is not ImageSetConfiguration, the only kind airlift reads"
        );
        assert_eq!(
            refusal(&format!("apiVersion: mirror.openshift.io/v1alpha2\n{body}")),
            "imageset.yaml: kind: missing; an image set file says `kind: ImageSetConfiguration`"
        );
        assert_eq!(
            refusal(&format!("kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v1alpha1\n{body}")),
            "imageset.yaml: apiVersion: 'mirror.openshift.io/v1alpha1' is not supported; use mirror.openshift.io/v1alpha2 or mirror.openshift.io/v2alpha1"
        );
        assert_eq!(
            refusal(&format!("kind: ImageSetConfiguration\n{body}")),
            "imageset.yaml: apiVersion: missing; use mirror.openshift.io/v1alpha2 or mirror.openshift.io/v2alpha1"
        );
        assert_eq!(
            refusal("- kind: ImageSetConfiguration\n"),
            "imageset.yaml: not an image set file: expected a mapping with kind, apiVersion and mirror"
        );
        assert!(refusal("kind: [\n").starts_with("imageset.yaml: not a valid YAML document: "));
        let twice = refusal(&format!("{HEADER}{body}{body}"));
        assert!(
            twice.starts_with("imageset.yaml: not a valid YAML document: duplicate entry with key \"mirror\""),
            "{twice}"
        );
        assert_eq!(
            refusal(&format!("kind: ImageSetConfiguration\napiVersion: 2\n{body}")),
            "imageset.yaml: apiVersion: expected a string, found '2'"
        );
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(
            refused("  platform:\n    architectures: [amd64, x86_64]\n    releases: [{version: 4.16.3}]\n"),
            "imageset.yaml: mirror.platform.architectures[1]: 'x86_64' is not a supported architecture; use amd64, arm64, ppc64le, s390x or multi"
        );
        assert_eq!(
            refused("  platform:\n    architectures: []\n    releases: [{version: 4.16.3}]\n"),
            "imageset.yaml: mirror.platform.architectures: empty; list at least one architecture, or remove the field for [amd64]"
        );
        assert_eq!(
            refused("  platform:\n    releases: [{version: 4.16}]\n"),
            "imageset.yaml: mirror.platform.releases[0].version: expected a release version like 4.16.3 (quote it: \"4.16.3\")"
        );
        assert_eq!(
            refused("  platform:\n    releases: [{version: 4.16.x}]\n"),
            "imageset.yaml: mirror.platform.releases[0].version: '4.16.x' is not a release version like 4.16.3 or 4.17.0-rc.1"
        );
        assert_eq!(
            refused("  platform:\n    channels: [{name: stable-4.16, maxVersion: latest}]\n"),
            "imageset.yaml: mirror.platform.channels[0].maxVersion: 'latest' is not a release version like 4.16.3 or 4.17.0-rc.1"
        );
        assert_eq!(
            refused("  platform:\n    releaseImageBase: quay.io/openshift-release-dev/ocp-release:4.16\n"),
            "imageset.yaml: mirror.platform.releaseImageBase: give the repository only (no tag or digest): airlift appends VERSION-ARCH as the tag"
        );
        assert_eq!(
            refused("  additionalImages:\n    - quay.io/a/b:1\n"),
            "imageset.yaml: mirror.additionalImages[0]: expected `- name: REFERENCE`"
        );
        assert_eq!(
            refused("  additionalImages:\n    - name: oci:/srv/layout\n"),
            "imageset.yaml: mirror.additionalImages[0].name: 'oci:/srv/layout': only registry references (docker://) are supported here"
        );
        for (mirror, path) in [
            (
                "  additionalImages:\n    - name: quay.io/a/b:1\n    - name: quay.io/NS/app\n",
                "mirror.additionalImages[1].name",
            ),
            ("  additionalImages:\n    - name: quay.io/a/b@sha256:1234\n", "mirror.additionalImages[0].name"),
            ("  platform:\n    releases: [\"quay.io/a/b:bad/tag\"]\n", "mirror.platform.releases[0]"),
        ] {
            let msg = refused(mirror);
            assert!(msg.starts_with(&format!("imageset.yaml: {path}: bad image reference 'docker://")), "{msg}");
        }
    }

    #[test]
    fn refuses_empty_mirror() {
        let nothing = "nothing to mirror; list releases under mirror.platform, catalogs under mirror.operators or images under mirror.additionalImages";
        assert_eq!(refusal(HEADER), "imageset.yaml: mirror: missing; nothing to mirror");
        assert_eq!(refused(""), format!("imageset.yaml: mirror: {nothing}"));
        assert_eq!(
            refused("  platform:\n    architectures: [amd64]\n  blockedImages: [{name: quay.io/a/b}]\n"),
            format!("imageset.yaml: mirror: {nothing}")
        );
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1}]\n  blockedImages: [{name: quay.io/a/b}]\n"),
            "imageset.yaml: mirror: nothing to mirror (every additional image is blocked); list releases under mirror.platform, catalogs under mirror.operators or images under mirror.additionalImages"
        );
    }

    fn patterns(written: &[&str]) -> Vec<Blocked> {
        written.iter().map(|w| Blocked::new(w).unwrap()).collect()
    }

    #[test]
    fn blocked_references() {
        let set = ImageSet {
            blocked: patterns(&[
                "registry.redhat.io/ubi9/ubi-minimal",
                "docker://quay.io/ns/app:1.0$",
                &format!("quay.io/ns/tool@{}", digest('b')),
                "nginx",
            ]),
            ..ImageSet::default()
        };
        // A plain repository name: every tag and digest of it.
        assert!(set.is_blocked("registry.redhat.io/ubi9/ubi-minimal"));
        assert!(set.is_blocked("docker://registry.redhat.io/ubi9/ubi-minimal:9.4"));
        assert!(set.is_blocked(&format!("registry.redhat.io/ubi9/ubi-minimal@{}", digest('c'))));
        assert!(!set.is_blocked("registry.redhat.io/ubi9/ubi:latest"));
        assert!(!set.is_blocked("quay.io/ubi9/ubi-minimal:9.4"));
        // With a tag, anchored at the end.
        assert!(set.is_blocked("quay.io/ns/app:1.0"));
        assert!(set.is_blocked(&format!("docker://quay.io/ns/app:1.0@{}", digest('c'))), "as REPO:TAG");
        assert!(!set.is_blocked("docker://quay.io/ns/app:1.0.1"));
        assert!(!set.is_blocked("quay.io/ns/app"));
        // With a digest.
        assert!(set.is_blocked(&format!("quay.io/ns/tool@{}", digest('b'))));
        assert!(set.is_blocked(&format!("docker://quay.io/ns/tool:2@{}", digest('b'))));
        assert!(!set.is_blocked(&format!("quay.io/ns/tool@{}", digest('c'))));
        assert!(!set.is_blocked("quay.io/ns/tool:2"));
        // Matched as written and in full: Docker Hub shorthands are found either way.
        assert!(set.is_blocked("docker://docker.io/library/nginx:1.27"));
        assert!(set.is_blocked("nginx"));
        // Other transports and unparsable text are never blocked.
        assert!(!set.is_blocked("oci:/srv/layout:nginx"));
        assert!(!set.is_blocked("docker://"));
    }

    #[test]
    fn blocked_patterns_are_regular_expressions() {
        let every = ImageSet { blocked: patterns(&[".*"]), ..ImageSet::default() };
        assert!(every.is_blocked("quay.io/a/b:1"));
        assert!(every.is_blocked(&format!("docker://registry.example:5000/x@{}", digest('a'))));
        // Unanchored: the pattern is searched anywhere in the reference.
        let mysql = ImageSet { blocked: patterns(&[".*/mysql.*"]), ..ImageSet::default() };
        assert!(mysql.is_blocked("docker.io/library/mysql:8"));
        assert!(mysql.is_blocked("mysql:8"), "matched in full form docker.io/library/mysql:8");
        assert!(mysql.is_blocked("quay.io/ns/mysql-exporter:1"));
        assert!(!mysql.is_blocked("quay.io/ns/postgres:16"));
        let tags = ImageSet { blocked: patterns(&[r":(latest|v1\.\d+)$"]), ..ImageSet::default() };
        assert!(tags.is_blocked("quay.io/ns/app"), "no tag: matched in full form as :latest");
        assert!(tags.is_blocked("quay.io/ns/app:v1.2"));
        assert!(!tags.is_blocked("quay.io/ns/app:v2.0"));
        // Anchored at the start: the registry must be the one named.
        let anchored = ImageSet { blocked: patterns(&["^registry\\.redhat\\.io/"]), ..ImageSet::default() };
        assert!(anchored.is_blocked("registry.redhat.io/ubi9/ubi:9.4"));
        assert!(!anchored.is_blocked("quay.io/registry.redhat.io/ubi:1"));
        // In a file: additional images and catalogs are skipped, an invalid pattern refused.
        let set = parse(
            &format!(
                "{HEADER}mirror:\n  additionalImages: [{{name: quay.io/a/mysql:8}}, {{name: quay.io/a/web:1}}]\n\
                 \x20 blockedImages: [{{name: '.*/mysql.*'}}]\n"
            ),
            ORIGIN,
        )
        .unwrap();
        assert_eq!(set.additional, vec!["docker://quay.io/a/web:1".to_string()]);
        assert_eq!(
            refused("  additionalImages: [{name: quay.io/a/b:1}]\n  blockedImages: [{name: quay.io/a/b}, {name: 'a(b'}]\n"),
            "imageset.yaml: mirror.blockedImages[1].name: 'a(b' is not a valid regular expression: regex parse error:\n    a(b\n     ^\nerror: unclosed group"
        );
    }

    #[test]
    fn loads_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imageset.yaml");
        std::fs::write(&path, format!("{HEADER}mirror:\n  additionalImages: [{{name: quay.io/a/b:1}}]\n")).unwrap();
        assert_eq!(
            load(&path).unwrap(),
            ImageSet { additional: vec!["docker://quay.io/a/b:1".to_string()], ..ImageSet::default() }
        );
        std::fs::write(&path, format!("{HEADER}mirror:\n  xyz: 1\n")).unwrap();
        let shown = path.display().to_string();
        assert!(load(&path).unwrap_err().to_string().starts_with(&format!("{shown}: mirror.xyz: unknown field")));
        std::fs::write(&path, b"kind: \xff\n").unwrap();
        assert_eq!(load(&path).unwrap_err().to_string(), format!("{shown}: not UTF-8 text"));
        std::fs::write(&path, vec![b'#'; MAX_IMAGESET_FILE as usize + 1]).unwrap();
        assert_eq!(load(&path).unwrap_err().to_string(), format!("{shown} is larger than {MAX_IMAGESET_FILE} bytes"));
        let missing = dir.path().join("missing.yaml");
        assert!(load(&missing).unwrap_err().to_string().starts_with(&missing.display().to_string()));
    }
}
