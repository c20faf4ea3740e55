//! The signed bundle manifest (format v1): what is in the bundle and where every
//! stored byte lives. Its exact bytes are signed; it is parsed only after the signature
//! has been checked, then validated so that every later step can trust its numbers.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bundle::ids::{ChunkId, EntryId, VolumeId};
use crate::bundle::names;
use crate::bundle::tar::{padded, BLOCK, END_OF_ARCHIVE};
use crate::digest::Digest;
use crate::error::{integrity, Result};

pub const FORMAT: &str = "airlift.bundle";
pub const VERSION: u32 = 1;
/// Largest bundle manifest airlift will read (a few hundred bytes per chunk).
pub const MAX_BUNDLE_MANIFEST: u64 = 256 << 20;
/// Largest chunk: fits the 11 octal digits of a ustar size field with room to spare.
pub const MAX_CHUNK: u64 = 4 << 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Bundle id: 32 hex digits, derived from the bundle's inputs.
    pub id: String,
    pub name: String,
    pub sequence: u64,
    /// Creation time, seconds since the Unix epoch (also the mtime of every tar entry).
    pub created: u64,
    /// Expiry, seconds since the Unix epoch.
    pub expires: Option<u64>,
    pub tool: String,
    pub volume_size: u64,
    pub chunk_size: u64,
    pub images: Vec<Image>,
    /// OpenShift releases packed (`pack --release`); absent from other bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Release>,
    /// Operator catalogs packed (an image set's `mirror.operators`); absent from other bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalogs: Vec<Catalog>,
    /// Release channels resolved against the update graph (an image set's
    /// `mirror.platform.channels`); absent from other bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// What a differential bundle relies on: the receipts and earlier bundles that say the
    /// far side holds its omitted blobs; absent from full bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<Base>,
    /// The blobs the images need that this bundle does not carry (layers only), each
    /// expected at the destination from one of `bases`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<Omitted>,
    /// Recovery volumes (`pack --parity`); absent from bundles without parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<Parity>,
    /// The discs the volume files go on (`--media` naming a disc), in order; absent for
    /// other media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discs: Option<Discs>,
    pub entries: Vec<Entry>,
    pub volumes: Vec<Volume>,
    pub chunks: Vec<Chunk>,
}

/// An OpenShift release: its image and every component are in `images`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The release image as given, e.g. `docker://quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64`.
    pub source: String,
    /// From the payload's release-metadata, e.g. `4.16.3`.
    pub version: String,
    /// The release image's digest.
    pub digest: Digest,
    /// Its architectures as OpenShift names them in tags (`x86_64`, `aarch64`, …).
    pub architectures: Vec<String>,
    /// Every component the payload's image-references names.
    pub components: Vec<Component>,
    /// Entry paths (`files/…`) of the release's signatures carried in the bundle.
    pub signatures: Vec<String>,
}

/// A release channel resolved against the update graph: what was asked, from which graph
/// documents, and the versions it gave (each packed as a release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// e.g. `stable-4.16`.
    pub name: String,
    /// `ocp` or `okd`.
    #[serde(rename = "type")]
    pub kind: String,
    /// As the update graph names them (`amd64`, `arm64`, …).
    pub architectures: Vec<String>,
    /// The graph documents read, one per architecture.
    pub graphs: Vec<GraphDocument>,
    /// The versions resolved, ascending.
    pub versions: Vec<String>,
}

/// One update graph document a channel was resolved from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphDocument {
    pub architecture: String,
    /// The URL queried (with `channel` and `arch`), or the file read.
    pub source: String,
    /// The sha256 of the document's bytes.
    pub digest: Digest,
}

/// One component image of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The ImageStream tag name, e.g. `cli` or `machine-config-operator`.
    pub name: String,
    /// Where the image is, by digest: `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:…`.
    pub image: String,
}

/// An operator catalog as packed: the catalog, the filter applied, what it kept, and
/// the image carried for it (the rebuilt catalog, or the original when carried whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The catalog as the image set names it, e.g. `docker://registry.redhat.io/redhat/redhat-operator-index:v4.16`.
    pub source: String,
    /// The original catalog image's digest, pinned at pack time.
    pub digest: Digest,
    /// The image set's entry (`mirror.operators[i]`, camelCase as written there); kept as
    /// JSON so the format does not depend on the catalog library.
    pub filter: serde_json::Value,
    /// The rebuilt (filtered) catalog image's digest; none when the catalog is carried
    /// unchanged (`full: true` without packages).
    pub rebuilt: Option<Digest>,
    /// `REPO:TAG` (with its registry) the catalog is mirrored as, e.g.
    /// `registry.redhat.io/redhat/redhat-operator-index:v4.16`.
    pub target: String,
    /// Every bundle kept.
    pub bundles: Vec<CatalogBundle>,
    /// The images the kept bundles bring (bundle images and related images), as the
    /// catalog names them, each among the bundle's images.
    pub images: Vec<String>,
    /// The CatalogSource to complete (`targetCatalogSourceTemplate`'s content), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
}

/// One bundle (operator version) a catalog kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogBundle {
    pub package: String,
    /// The bundle's name, e.g. `etcdoperator.v0.9.4`.
    pub name: String,
    pub version: String,
    /// The bundle image, as the catalog names it.
    pub image: String,
}

/// What a differential bundle's omitted blobs are expected from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    pub kind: BaseKind,
    /// The receipt's or the earlier bundle's id.
    pub id: String,
    /// The receipt's destination, or the earlier bundle's name.
    pub name: String,
    /// When the receipt or the earlier bundle was made, seconds since the Unix epoch.
    pub created: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseKind {
    /// A receipt written at the destination (`pack --have`).
    Receipt,
    /// An earlier bundle, assumed delivered (`pack --since`).
    Bundle,
}

impl BaseKind {
    pub fn name(self) -> &'static str {
        match self {
            BaseKind::Receipt => "receipt",
            BaseKind::Bundle => "bundle",
        }
    }
}

impl Base {
    /// How reports name the base: `receipt 0123… (docker://host/ns, 2026-12-04)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}, made {})",
            self.kind.name(),
            self.id,
            crate::text::escaped(&self.name),
            crate::time::rfc3339(self.created)
        )
    }
}

/// A blob an image needs that the bundle does not carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Omitted {
    pub digest: Digest,
    pub size: u64,
    /// The id of the base that says the destination holds it.
    pub base: String,
    /// A repository at the destination that holds it, when the base says (a receipt of a
    /// registry): `unpack --to` mounts it from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// One image (manifest or index) as packed, with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The source as given, e.g. `oci:./layout:app-1.0`.
    pub source: String,
    /// The reference name (tag) the image is known by, if any.
    pub reference: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    /// Size of the image manifest or index itself.
    pub size: u64,
    /// Total size of every blob the image needs (manifests included).
    pub total_size: u64,
    pub platforms: Vec<String>,
    /// Every blob the image needs: manifests, indexes, configs, layers.
    pub blobs: Vec<Digest>,
    /// What the source registry had attached to this image, each packed as an image of
    /// the bundle (by its digest): cosign signatures, attestations, SBOMs, OCI referrers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<Attached>,
    /// Whether a cosign signature was found for the image; `None` when none was looked
    /// for (`--signatures skip`, or the image is itself attached to another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureState>,
}

#[cfg(test)]
impl Image {
    /// A one-blob linux/amd64 image from `source`, its digest made from `n`.
    pub fn example(source: &str, n: u8) -> Image {
        Image {
            source: source.into(),
            reference: None,
            digest: Digest::of(&[n]),
            media_type: crate::oci::OCI_MANIFEST.into(),
            size: 1,
            total_size: 1,
            platforms: vec!["linux/amd64".into()],
            blobs: vec![Digest::of(&[n])],
            attached: vec![],
            signature: None,
        }
    }
}

/// An artifact attached to an image, carried as an image of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attached {
    pub kind: AttachedKind,
    /// The digest of the artifact's manifest (or of the fallback tag's index).
    pub digest: Digest,
}

/// How an artifact is attached to its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedKind {
    /// cosign's `sha256-HEX.sig` tag.
    Signature,
    /// cosign's `sha256-HEX.att` tag.
    Attestation,
    /// cosign's `sha256-HEX.sbom` tag.
    Sbom,
    /// An OCI 1.1 referrer (a manifest whose `subject` is the image), found through the
    /// referrers API.
    Referrer,
    /// The OCI 1.1 fallback tag `sha256-HEX`: an index of the referrers, for registries
    /// without the referrers API.
    Referrers,
}

impl AttachedKind {
    /// The cosign kinds, in the order of [`crate::sigstore::cosign_tags`].
    pub const COSIGN: [AttachedKind; 3] = [AttachedKind::Signature, AttachedKind::Attestation, AttachedKind::Sbom];

    pub fn name(self) -> &'static str {
        match self {
            AttachedKind::Signature => "signature",
            AttachedKind::Attestation => "attestation",
            AttachedKind::Sbom => "sbom",
            AttachedKind::Referrer => "referrer",
            AttachedKind::Referrers => "referrers",
        }
    }
}

/// What looking for an image's cosign signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureState {
    /// A `.sig` was found and packed with the image.
    Signed,
    /// No `.sig` was found.
    Unsigned,
}

impl SignatureState {
    pub fn name(self) -> &'static str {
        match self {
            SignatureState::Signed => "signed",
            SignatureState::Unsigned => "unsigned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// `airlift/volume.NNNN.json`, first in every volume: says which bundle it belongs to.
    Label,
    /// `oci-layout` and `index.json`.
    Layout,
    /// `blobs/sha256/<hex>`.
    Blob,
    /// An included file, `files/<name>`.
    File,
    /// The airlift executable, `files/airlift` (stored uncompressed).
    Installer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

/// One logical file of the bundle, stored as one or more chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Path in the extracted tree (before `.zst` and `.partNNNN` suffixes).
    pub path: String,
    pub kind: EntryKind,
    /// sha256 of the expanded content.
    pub digest: Digest,
    /// Expanded size; decompression stops past it.
    pub size: u64,
    pub compression: Compression,
    /// Stored (possibly compressed) size: the sum of the entry's chunk lengths.
    pub stored_size: u64,
    /// Unix permission bits of the tar entry (0644 or 0755).
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub file: String,
    pub size: u64,
    pub sha256: Digest,
}

/// One stored tar entry: a whole entry or one numbered part of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// 1-based volume number.
    pub volume: u32,
    /// Offset of the chunk's data (after its tar header) in the volume.
    pub offset: u64,
    /// Stored length.
    pub length: u64,
    /// sha256 of the stored bytes.
    pub sha256: Digest,
    /// Path of the entry this chunk belongs to.
    pub entry: String,
    /// 0-based part index within the entry.
    pub part: u32,
}

/// Reed–Solomon recovery volumes over the data volumes. Stripe `j` is bytes
/// `[j * shard_size, (j + 1) * shard_size)` of every volume (the last stripe shorter), data
/// volumes read as zeros past their end; recovery volume `p` holds recovery shard `p` of
/// every stripe at the stripe's offset. So any `volumes.len()` lost or damaged volumes, data
/// or recovery, can be rebuilt. Recovery volumes are raw bytes (not tar) exactly as long as
/// the largest data volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parity {
    /// The code: [`PARITY_CODE`] (reed-solomon-simd's Leopard-RS over GF(2^16)).
    pub code: String,
    /// Bytes per shard: even, from [`MIN_SHARD`] to [`MAX_SHARD`].
    pub shard_size: u64,
    /// The recovery volumes, named by [`names::parity_file`].
    pub volumes: Vec<Volume>,
}

pub const PARITY_CODE: &str = "reed-solomon-simd";
pub const MIN_SHARD: u64 = 64;
pub const MAX_SHARD: u64 = 64 << 20;
/// Most recovery volumes a bundle may have (the code's own bound is far higher).
pub const MAX_PARITY_VOLUMES: usize = 1024;

/// How the volume files are laid out on discs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discs {
    /// Bytes one disc holds (the `--media` preset's, or `--disc-size`).
    pub capacity: u64,
    pub discs: Vec<Disc>,
}

/// One disc: its label and the volume files it carries (data volumes, then recovery volumes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disc {
    /// The ISO 9660 volume identifier, and what a prompt asks for: [`names::disc_label`].
    pub label: String,
    pub files: Vec<String>,
}

/// Facts derived from a validated manifest, for fast lookups.
#[derive(Debug, Clone)]
pub struct Index {
    /// The entry of each chunk.
    chunk_entry: Vec<EntryId>,
    /// The volume of each chunk.
    chunk_volume: Vec<VolumeId>,
    /// The chunks of each entry, in part order.
    entry_chunks: Vec<Vec<ChunkId>>,
    /// Offset of each chunk within its entry's stored stream.
    chunk_stored_offset: Vec<u64>,
    /// The chunks of each volume, in offset order.
    volume_chunks: Vec<Vec<ChunkId>>,
}

impl Index {
    /// The entry chunk `c` is (a part of).
    pub fn entry_of(&self, c: ChunkId) -> EntryId {
        self.chunk_entry[c.index()]
    }

    /// The volume chunk `c` is stored in.
    pub fn volume_of(&self, c: ChunkId) -> VolumeId {
        self.chunk_volume[c.index()]
    }

    /// The chunks of entry `e`, in part order.
    pub fn chunks_of(&self, e: EntryId) -> &[ChunkId] {
        &self.entry_chunks[e.index()]
    }

    /// The chunks stored in volume `v`, in offset order.
    pub fn chunks_in(&self, v: VolumeId) -> &[ChunkId] {
        &self.volume_chunks[v.index()]
    }

    /// Where chunk `c` starts in its entry's stored stream.
    pub fn stored_offset(&self, c: ChunkId) -> u64 {
        self.chunk_stored_offset[c.index()]
    }
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parse signed manifest bytes and validate them.
    pub fn parse(bytes: &[u8]) -> Result<(Manifest, Index)> {
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| integrity(format!("manifest is not valid JSON: {e}")))?;
        if probe.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
            return Err(integrity("manifest is not an airlift bundle manifest (format field)"));
        }
        let version = probe.get("version").and_then(|v| v.as_u64());
        if version != Some(VERSION as u64) {
            return Err(integrity(format!(
                "bundle format version {version:?} is not supported by this airlift (it reads version {VERSION})"
            )));
        }
        let manifest: Manifest = serde_json::from_value(probe)
            .map_err(|e| integrity(format!("manifest does not match format v{VERSION}: {e}")))?;
        let index = manifest.validate()?;
        Ok((manifest, index))
    }

    /// Check every structural rule; on success, return the lookup index.
    pub fn validate(&self) -> Result<Index> {
        if !names::valid_bundle_name(&self.name) {
            return bad(format!("bundle name '{}' is not allowed", self.name));
        }
        if self.id.len() != 32 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!("bundle id '{}' is malformed", self.id));
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return bad(format!("chunk size {} is out of range", self.chunk_size));
        }
        let entry_by_path = self.check_entries()?;
        self.check_volume_names()?;
        self.check_parity()?;
        self.check_discs()?;
        let mut index = self.map_chunks(&entry_by_path)?;
        index.chunk_stored_offset = self.stored_offsets(&index)?;
        self.check_volume_layout(&index)?;
        self.check_references(&entry_by_path)?;
        Ok(index)
    }

    pub fn chunk(&self, c: ChunkId) -> &Chunk {
        &self.chunks[c.index()]
    }

    pub fn entry(&self, e: EntryId) -> &Entry {
        &self.entries[e.index()]
    }

    pub fn volume(&self, v: VolumeId) -> &Volume {
        &self.volumes[v.index()]
    }

    /// Every volume, first to last.
    pub fn volume_ids(&self) -> impl Iterator<Item = VolumeId> {
        (0..self.volumes.len()).map(VolumeId::new)
    }

    /// Every entry, in manifest order.
    pub fn entry_ids(&self) -> impl Iterator<Item = EntryId> {
        (0..self.entries.len()).map(EntryId::new)
    }

    /// Every entry's path, size and mode; each path once. Returns the entry of each path.
    fn check_entries(&self) -> Result<HashMap<&str, EntryId>> {
        let mut entry_by_path = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            names::check_entry_path(e)?;
            if entry_by_path.insert(e.path.as_str(), EntryId::new(i)).is_some() {
                return bad(format!("entry '{}' is listed twice", e.path));
            }
            if e.compression == Compression::None && e.stored_size != e.size {
                return bad(format!("uncompressed entry '{}' has stored size != size", e.path));
            }
            if e.mode != 0o644 && e.mode != 0o755 {
                return bad(format!("entry '{}' has mode {:o}", e.path, e.mode));
            }
        }
        Ok(entry_by_path)
    }

    /// Volumes are named in order after the bundle and fit the volume size.
    fn check_volume_names(&self) -> Result<()> {
        for v in self.volume_ids() {
            let vol = self.volume(v);
            let expected = names::volume_file(&self.name, v);
            if vol.file != expected {
                return bad(format!("volume {v} is named '{}', expected '{expected}'", vol.file));
            }
            if vol.size > self.volume_size {
                return bad(format!("volume '{}' is larger than the volume size", vol.file));
            }
        }
        Ok(())
    }

    /// Recovery volumes: the known code, a shard size in range, names in order, each as
    /// long as the largest data volume.
    fn check_parity(&self) -> Result<()> {
        let Some(p) = &self.parity else { return Ok(()) };
        if p.code != PARITY_CODE {
            return bad(format!("parity code '{}' is not known (expected '{PARITY_CODE}')", p.code.escape_debug()));
        }
        if p.shard_size % 2 != 0 || !(MIN_SHARD..=MAX_SHARD).contains(&p.shard_size) {
            return bad(format!(
                "parity shard size {} is not an even number from {MIN_SHARD} to {MAX_SHARD}",
                p.shard_size
            ));
        }
        if p.volumes.is_empty() || p.volumes.len() > MAX_PARITY_VOLUMES || self.volumes.is_empty() {
            return bad(format!("{} recovery volumes for {} data volumes", p.volumes.len(), self.volumes.len()));
        }
        let longest = self.volumes.iter().map(|v| v.size).max().unwrap_or(0);
        if longest % 2 != 0 {
            return bad(format!("the longest data volume has an odd length ({longest}): no parity over it"));
        }
        for (i, vol) in p.volumes.iter().enumerate() {
            let expected = names::parity_file(&self.name, i + 1);
            if vol.file != expected {
                return bad(format!("recovery volume {} is named '{}', expected '{expected}'", i + 1, vol.file));
            }
            if vol.size != longest {
                return bad(format!("recovery volume '{}' is {} bytes, not {longest}", vol.file, vol.size));
            }
        }
        Ok(())
    }

    /// Every volume file (data and recovery) on exactly one disc; labels well formed and
    /// distinct.
    fn check_discs(&self) -> Result<()> {
        let Some(d) = &self.discs else { return Ok(()) };
        if d.discs.is_empty() {
            return bad("the disc list is empty".into());
        }
        let mut placed = HashSet::new();
        let mut labels = HashSet::new();
        for disc in &d.discs {
            if !names::valid_disc_label(&disc.label) || !labels.insert(disc.label.as_str()) {
                return bad(format!("disc label '{}' is malformed or repeated", disc.label.escape_debug()));
            }
            for f in &disc.files {
                if !placed.insert(f.as_str()) {
                    return bad(format!("'{}' is on more than one disc", f.escape_debug()));
                }
            }
        }
        let all: HashSet<&str> = self.volume_files().collect();
        if placed != all {
            return bad("the discs do not list exactly the bundle's volume files".into());
        }
        Ok(())
    }

    /// Every volume file: the data volumes, then the recovery volumes.
    pub fn volume_files(&self) -> impl Iterator<Item = &str> {
        self.all_volumes().map(|v| v.file.as_str())
    }

    /// The disc that carries volume file `file`, when the manifest plans discs.
    pub fn disc_of(&self, file: &str) -> Option<&Disc> {
        self.discs.as_ref()?.discs.iter().find(|d| d.files.iter().any(|f| f == file))
    }

    /// Every volume, data then recovery: what `SHA256SUMS` lists.
    pub fn all_volumes(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.iter().chain(self.parity.iter().flat_map(|p| p.volumes.iter()))
    }

    /// Every chunk belongs to a known entry, in part order, and to a listed volume:
    /// the index without the stored offsets.
    fn map_chunks(&self, entry_by_path: &HashMap<&str, EntryId>) -> Result<Index> {
        let mut chunk_entry = Vec::with_capacity(self.chunks.len());
        let mut chunk_volume = Vec::with_capacity(self.chunks.len());
        let mut entry_chunks: Vec<Vec<ChunkId>> = vec![Vec::new(); self.entries.len()];
        let mut volume_chunks: Vec<Vec<ChunkId>> = vec![Vec::new(); self.volumes.len()];
        for (c, chunk) in self.chunks.iter().enumerate() {
            let c = ChunkId::new(c);
            let Some(&e) = entry_by_path.get(chunk.entry.as_str()) else {
                return bad(format!("chunk {c} belongs to unknown entry '{}'", chunk.entry));
            };
            let Some(v) = VolumeId::from_number(chunk.volume).filter(|v| v.index() < self.volumes.len()) else {
                return bad(format!("chunk {c} is in volume {} which is not listed", chunk.volume));
            };
            if chunk.length > self.chunk_size {
                return bad(format!("chunk {c} is longer than the chunk size"));
            }
            if chunk.part as usize != entry_chunks[e.index()].len() {
                return bad(format!("chunk {c} of '{}' is part {} out of order", chunk.entry, chunk.part));
            }
            chunk_entry.push(e);
            chunk_volume.push(v);
            entry_chunks[e.index()].push(c);
            volume_chunks[v.index()].push(c);
        }
        Ok(Index { chunk_entry, chunk_volume, entry_chunks, chunk_stored_offset: Vec::new(), volume_chunks })
    }

    /// Each entry has chunks whose lengths add up to its stored size (and a whole
    /// uncompressed entry's chunk hash is its digest): where each chunk starts in its
    /// entry's stored stream.
    fn stored_offsets(&self, index: &Index) -> Result<Vec<u64>> {
        let mut chunk_stored_offset = vec![0u64; self.chunks.len()];
        for e in self.entry_ids() {
            let (entry, chunks) = (self.entry(e), index.chunks_of(e));
            if chunks.is_empty() {
                return bad(format!("entry '{}' has no chunks", entry.path));
            }
            let mut offset = 0u64;
            for &c in chunks {
                chunk_stored_offset[c.index()] = offset;
                offset = offset.saturating_add(self.chunk(c).length);
            }
            if offset != entry.stored_size {
                return bad(format!("chunks of '{}' add up to {offset}, not {}", entry.path, entry.stored_size));
            }
            if chunks.len() == 1
                && entry.compression == Compression::None
                && self.chunk(chunks[0]).sha256 != entry.digest
            {
                return bad(format!("'{}' is stored whole but its chunk hash differs from its digest", entry.path));
            }
        }
        Ok(chunk_stored_offset)
    }

    /// Rebuild each volume's exact layout: label first, then headers and padded data
    /// back to back, then the end-of-archive blocks.
    fn check_volume_layout(&self, index: &Index) -> Result<()> {
        for v in self.volume_ids() {
            let (vol, chunks) = (self.volume(v), index.chunks_in(v));
            let mut pos = 0u64;
            for (k, &c) in chunks.iter().enumerate() {
                let chunk = self.chunk(c);
                if chunk.offset != pos + BLOCK {
                    return bad(format!(
                        "chunk {c} in '{}' is at offset {} but should be at {}",
                        vol.file,
                        chunk.offset,
                        pos + BLOCK
                    ));
                }
                let entry = self.entry(index.entry_of(c));
                if k == 0 && (entry.kind != EntryKind::Label || entry.path != names::label_path(v)) {
                    return bad(format!("volume '{}' does not start with its label", vol.file));
                }
                pos = chunk.offset + padded(chunk.length);
            }
            if chunks.is_empty() {
                return bad(format!("volume '{}' holds no chunks", vol.file));
            }
            if pos + END_OF_ARCHIVE != vol.size {
                return bad(format!(
                    "volume '{}' should be {} bytes, manifest says {}",
                    vol.file,
                    pos + END_OF_ARCHIVE,
                    vol.size
                ));
            }
        }
        Ok(())
    }

    /// Every blob an image needs is in the bundle or omitted (once, from a listed base,
    /// never both); every release is among the images and its signatures are files of the
    /// bundle.
    fn check_references(&self, entry_by_path: &HashMap<&str, EntryId>) -> Result<()> {
        let blobs: HashSet<&Digest> =
            self.entries.iter().filter(|e| e.kind == EntryKind::Blob).map(|e| &e.digest).collect();
        let omitted = self.check_omitted(&blobs)?;
        for image in &self.images {
            for blob in &image.blobs {
                if !blobs.contains(blob) && !omitted.contains(blob) {
                    return bad(format!("image {} needs blob {blob} which is not in the bundle", image.digest));
                }
            }
        }
        for release in &self.releases {
            if !self.images.iter().any(|i| i.digest == release.digest) {
                return bad(format!("release {} ({}) is not among the images", release.version, release.digest));
            }
            for sig in &release.signatures {
                let is_file = entry_by_path.get(sig.as_str()).is_some_and(|&e| self.entry(e).kind == EntryKind::File);
                if !is_file {
                    return bad(format!("release {} signature '{sig}' is not a file of the bundle", release.version));
                }
            }
        }
        for catalog in &self.catalogs {
            let carried = catalog.rebuilt.as_ref().unwrap_or(&catalog.digest);
            if !self.images.iter().any(|i| i.digest == *carried) {
                return bad(format!("catalog {} ({carried}) is not among the images", catalog.source));
            }
        }
        Ok(())
    }

    /// The omitted blobs: each once, not also carried, from a listed base (each base
    /// once, with a well-formed id), and needed by an image.
    fn check_omitted(&self, carried: &HashSet<&Digest>) -> Result<HashSet<&Digest>> {
        let mut bases = HashSet::new();
        for base in &self.bases {
            if base.id.is_empty() || base.id.len() > 64 || !base.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!("base id '{}' is malformed", crate::text::escaped(&base.id)));
            }
            if !bases.insert(base.id.as_str()) {
                return bad(format!("base {} is listed twice", base.id));
            }
        }
        let needed: HashSet<&Digest> = self.images.iter().flat_map(|i| &i.blobs).collect();
        let mut omitted = HashSet::new();
        for o in &self.omitted {
            if !bases.contains(o.base.as_str()) {
                return bad(format!(
                    "omitted blob {} is expected from base '{}' which is not listed",
                    o.digest,
                    crate::text::escaped(&o.base)
                ));
            }
            if carried.contains(&o.digest) {
                return bad(format!("blob {} is both carried and omitted", o.digest));
            }
            if !needed.contains(&o.digest) {
                return bad(format!("omitted blob {} is needed by no image", o.digest));
            }
            if !omitted.insert(&o.digest) {
                return bad(format!("omitted blob {} is listed twice", o.digest));
            }
            if let Some(repo) = &o.repository {
                if crate::oci::names::Repository::parse(repo).is_none() {
                    return bad(format!(
                        "omitted blob {}: repository '{}' is not valid",
                        o.digest,
                        crate::text::escaped(repo)
                    ));
                }
            }
        }
        Ok(omitted)
    }

    /// What a differential bundle relies on, per base: the base, and the number and bytes
    /// of the omitted blobs expected from it (empty for a full bundle).
    pub fn reliance(&self) -> Vec<(&Base, usize, u64)> {
        self.bases
            .iter()
            .map(|b| {
                let from = self.omitted.iter().filter(|o| o.base == b.id);
                (b, from.clone().count(), from.map(|o| o.size).sum())
            })
            .collect()
    }

    /// The bytes of the blobs the bundle relies on the destination holding.
    pub fn omitted_bytes(&self) -> u64 {
        self.omitted.iter().map(|o| o.size).sum()
    }

    /// The base `id` names.
    pub fn base(&self, id: &str) -> Option<&Base> {
        self.bases.iter().find(|b| b.id == id)
    }

    /// Stored name (tar entry name) of a chunk.
    pub fn chunk_name(&self, index: &Index, c: ChunkId) -> String {
        let e = index.entry_of(c);
        names::stored_name(self.entry(e), self.chunk(c).part, index.chunks_of(e).len())
    }

    /// What damage to entry `e` hurts, in words: the images that need it, or the file.
    pub fn hurt_by(&self, e: EntryId) -> Vec<String> {
        let entry = self.entry(e);
        match entry.kind {
            EntryKind::Blob => {
                self.images.iter().filter(|i| i.blobs.contains(&entry.digest)).map(image_label).collect()
            }
            EntryKind::Label => vec![],
            _ => vec![entry.path.clone()],
        }
    }
}

fn bad<T>(msg: String) -> Result<T> {
    Err(integrity(format!("manifest is inconsistent: {msg}")))
}

/// How an image is named in reports.
pub fn image_label(image: &Image) -> String {
    match &image.reference {
        Some(r) => format!("{r} ({})", image.digest),
        None => image.digest.to_string(),
    }
}
