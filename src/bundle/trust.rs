//! What unpack accepts beyond the signature: rollback policy and the image graph.
//!
//! Rollback protection is about what a destination serves, not about bundle names
//! (DESIGN.md property 8): a tag (a layout's ref name, a registry's `REPO:TAG`) never
//! moves to content from a bundle signed earlier than the bundle that set it, by the same
//! key, whatever the bundles are called. "Signed earlier" compares the signed creation
//! time (in the trusted comment), ties broken by sequence. Besides, for one (key, bundle
//! name) an older sequence is refused, and a different manifest under a sequence already
//! accepted. `--allow-rollback` overrides all three.
//!
//! The record lives at the destination, in its state directory (`trust.json` beside the
//! layout's or registry storage's `.airlift/`), updated under the destination's run lock:
//! ```text
//! { "version": 1,
//!   "bundles": { "KEYID/NAME": { "sequence", "created", "manifest_sha256", "bundle" } },
//!   "tags":    { "TAG": { "digest", "key_id", "name", "sequence", "created", "bundle" } } }
//! ```
//!
//! The image graph: an image is published only when its signed description agrees with
//! its own (verified) manifest bytes: its digest is one of the bundle's blobs, its media
//! type is the manifest's, and every blob its manifest references is listed for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use oci_spec::image::Descriptor;

use crate::bundle::manifest::{EntryKind, Image};
use crate::bundle::reader::Bundle;
use crate::digest::Digest;
use crate::error::{integrity, refused, usage, Result};
use crate::oci::layout::{read_limited, BlobRef};
use crate::oci::walk::{walk, Doc, Invalid, Kind, Manifests, Node, Role, Visitor};
use crate::oci::{doc_type, is_index, DocType, MAX_MANIFEST, OCI_INDEX};
use crate::store::BlobStore;

/// A tag a bundle points at an image.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The tag as the destination names it: a ref name, `REPO:TAG`, `HOST/REPO:TAG`.
    pub tag: String,
    pub digest: Digest,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    bundles: BTreeMap<String, Accepted>,
    #[serde(default)]
    tags: BTreeMap<String, TagSetter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Accepted {
    sequence: u64,
    created: u64,
    manifest_sha256: String,
    bundle: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TagSetter {
    digest: String,
    key_id: String,
    name: String,
    sequence: u64,
    created: u64,
    bundle: String,
}

/// A destination's rollback record.
pub struct Record {
    path: PathBuf,
    state: State,
}

impl Record {
    /// The record kept in `store`'s state (none yet: empty): beside what a destination
    /// serves (the layout, the registry's storage); for `--to`, beside the staging store
    /// (this host).
    pub fn open(store: &BlobStore) -> Result<Record> {
        let path = store.state(crate::store::State::Trust);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                usage(format!("{}: not a rollback record ({e}); move it away to start a new one", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State { version: 1, ..earlier(store) },
            Err(e) => return Err(crate::error::Error::io(&path, e)),
        };
        Ok(Record { path, state })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuse `bundle` (exit 1, with a hint) when accepting it would roll this destination
    /// back: an older sequence or another manifest under an accepted sequence of its
    /// (key, name), or a tag of `claims` moving to content signed earlier than what set it.
    /// With `allow`, nothing is refused; what would have been is returned, to be shown.
    pub fn check(&self, bundle: &Bundle, claims: &[Claim], allow: bool) -> Result<Vec<String>> {
        let m = &bundle.manifest;
        let mut problems = Vec::new();
        let mut newest_sequence = None;
        if let Some(prev) = self.state.bundles.get(&slot(bundle)) {
            if m.sequence < prev.sequence {
                problems.push(format!(
                    "bundle '{}' sequence {} from key {}, but sequence {} ({}) was already accepted here",
                    m.name, m.sequence, bundle.key_id, prev.sequence, prev.bundle
                ));
            } else if m.sequence == prev.sequence && prev.manifest_sha256 != bundle.manifest_sha256.to_string() {
                problems.push(format!(
                    "bundle '{}' sequence {} from key {} is a different manifest from the one already accepted \
                     here under that sequence ({})",
                    m.name, m.sequence, bundle.key_id, prev.bundle
                ));
            }
            newest_sequence = Some(prev.sequence);
        }
        for claim in claims {
            let Some(setter) = self.state.tags.get(&claim.tag) else { continue };
            if setter.key_id != bundle.key_id || setter.digest == claim.digest.to_string() {
                continue;
            }
            if (m.created, m.sequence) < (setter.created, setter.sequence) {
                problems.push(format!(
                    "{} would move back from {} (set by bundle '{}' sequence {}, signed {}) to {} from bundle '{}' \
                     sequence {}, signed earlier ({})",
                    claim.tag,
                    setter.digest,
                    setter.name,
                    setter.sequence,
                    crate::time::rfc3339(setter.created),
                    claim.digest,
                    m.name,
                    m.sequence,
                    crate::time::rfc3339(m.created)
                ));
                newest_sequence = newest_sequence.max(Some(setter.sequence));
            }
        }
        if problems.is_empty() || allow {
            return Ok(problems);
        }
        let next = newest_sequence.unwrap_or(m.sequence) + 1;
        Err(refused(
            format!(
                "rollback refused in {}: {}; use --allow-rollback to accept it anyway",
                self.path.display(),
                problems.join("; ")
            ),
            format!("repack with --sequence {next} (or a newer bundle)"),
        ))
    }

    /// Record `bundle` as accepted and as the setter of the tags it published.
    pub fn accept(&mut self, bundle: &Bundle, published: &[Claim]) -> Result<()> {
        let m = &bundle.manifest;
        let slot = slot(bundle);
        if !self.state.bundles.get(&slot).is_some_and(|prev| m.sequence < prev.sequence) {
            self.state.bundles.insert(
                slot,
                Accepted {
                    sequence: m.sequence,
                    created: m.created,
                    manifest_sha256: bundle.manifest_sha256.to_string(),
                    bundle: m.id.clone(),
                },
            );
        }
        for claim in published {
            self.state.tags.insert(
                claim.tag.clone(),
                TagSetter {
                    digest: claim.digest.to_string(),
                    key_id: bundle.key_id.clone(),
                    name: m.name.clone(),
                    sequence: m.sequence,
                    created: m.created,
                    bundle: m.id.clone(),
                },
            );
        }
        let mut bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| usage(format!("internal: {e}")))?;
        bytes.push(b'\n');
        crate::store::write_atomic(&self.path, &bytes)
    }
}

/// What an earlier airlift recorded in `accepted.json` (per key and bundle name: the last
/// sequence and its manifest), so that upgrading keeps that protection.
fn earlier(store: &BlobStore) -> State {
    let path = store.state(crate::store::State::Accepted);
    let old: BTreeMap<String, serde_json::Value> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let bundles = old
        .into_iter()
        .filter_map(|(slot, v)| {
            Some((
                slot,
                Accepted {
                    sequence: v.get("sequence")?.as_u64()?,
                    created: 0,
                    manifest_sha256: v.get("manifest_sha256")?.as_str()?.to_string(),
                    bundle: v.get("bundle").and_then(|b| b.as_str()).unwrap_or_default().to_string(),
                },
            ))
        })
        .collect();
    State { bundles, ..State::default() }
}

fn slot(bundle: &Bundle) -> String {
    format!("{}/{}", bundle.key_id, bundle.manifest.name)
}

/// The signed image list agrees with the bundle's entries: every image's own digest is
/// one of its blobs and a blob of the bundle. Checked before anything is written.
pub fn check_image_list(bundle: &Bundle) -> Result<()> {
    let m = &bundle.manifest;
    for image in &m.images {
        let carried = m.entries.iter().any(|e| e.kind == EntryKind::Blob && e.digest == image.digest);
        if !carried || !image.blobs.contains(&image.digest) {
            return Err(inconsistent(image, "its manifest is not among the bundle's blobs for it".into()));
        }
    }
    Ok(())
}

/// Image `image`'s manifest (or index, and the children carried) as stored in `store`
/// (verified bytes of this bundle) agrees with its signed description: media type, and
/// every blob it references is listed for the image (children an index names may be
/// left out: packed for some platforms only).
pub fn check_image_graph(bundle: &Bundle, store: &BlobStore, image: &Image) -> Result<()> {
    let entry = bundle.manifest.entries.iter().find(|e| e.kind == EntryKind::Blob && e.digest == image.digest);
    if let Some(e) = entry.filter(|e| e.size != image.size) {
        return Err(inconsistent(image, format!("its manifest is {} bytes in the bundle, not {}", e.size, image.size)));
    }
    let top = BlobRef { digest: image.digest.clone(), size: image.size, media_type: image.media_type.clone() };
    let carried = Carried { bundle, store, image };
    walk(&carried, &top, &mut Checker(&carried))
}

/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;

/// An image's documents as this bundle carries them (verified bytes in `store`).
struct Carried<'a> {
    bundle: &'a Bundle,
    store: &'a BlobStore,
    image: &'a Image,
}

impl Carried<'_> {
    /// Whether blob `dg` (`size` bytes as document `parent` says) is listed for the image
    /// and carried by the bundle, or omitted from it (a differential bundle); an error when
    /// the bundle's is another size.
    fn listed(&self, parent: &Digest, dg: &Digest, size: u64) -> Result<bool> {
        if !self.image.blobs.contains(dg) {
            return Ok(false);
        }
        let manifest = &self.bundle.manifest;
        let listed = manifest.entries.iter().find(|e| &e.digest == dg).map(|e| e.size);
        match listed.or_else(|| manifest.omitted.iter().find(|o| &o.digest == dg).map(|o| o.size)) {
            Some(s) if s == size => Ok(true),
            Some(s) => {
                Err(inconsistent(self.image, format!("{parent} says {dg} is {size} bytes, the bundle's is {s}")))
            }
            None => Ok(false),
        }
    }
}

impl Manifests for Carried<'_> {
    /// The document's bytes, whose JSON must agree with the media type it is listed under.
    fn manifest(&self, blob: &BlobRef, _: Role) -> Result<Option<Vec<u8>>> {
        let digest = &blob.digest;
        let bytes = read_limited(&self.store.path(digest), MAX_MANIFEST)?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| inconsistent(self.image, format!("{digest} is not a JSON manifest ({e})")))?;
        if Kind::of(&blob.media_type) == Kind::Schema1 {
            return Ok(Some(bytes));
        }
        let media_type = blob.media_type.as_str();
        let (agrees, found) = match doc_type(&doc) {
            DocType::Named(t) => (t == media_type, t),
            DocType::Implied(OCI_INDEX) => (is_index(media_type), "an index"),
            DocType::Implied(_) | DocType::Unknown => (!is_index(media_type), "a manifest"),
        };
        if !agrees {
            return Err(inconsistent(
                self.image,
                format!("{digest} is said to be {media_type} but its bytes are {found}"),
            ));
        }
        Ok(Some(bytes))
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> crate::error::Error {
        let digest = &blob.digest;
        inconsistent(
            self.image,
            match problem {
                Invalid::Descriptor(_) => format!("{digest} holds a descriptor without a valid digest"),
                Invalid::Index(e) | Invalid::Manifest(e) => {
                    format!("{digest} is not a valid {} ({e})", blob.media_type)
                }
            },
        )
    }
}

/// Follows the children an index has carried, and refuses a manifest needing a blob the
/// bundle does not list for the image (foreign layers, fetched from their URLs, aside).
struct Checker<'a>(&'a Carried<'a>);

impl Visitor for Checker<'_> {
    fn enter(&mut self, parent: &Node, child: &BlobRef, desc: &Descriptor) -> Result<bool> {
        let (carried, digest) = (self.0, &parent.blob.digest);
        match parent.doc {
            Doc::Index(_) => {
                let listed = carried.listed(digest, &child.digest, child.size)?;
                if listed && parent.depth >= MAX_DEPTH {
                    return Err(inconsistent(carried.image, format!("{} nests indexes too deep", child.digest)));
                }
                Ok(listed)
            }
            _ if desc.urls().is_some() => Ok(false),
            _ if carried.listed(digest, &child.digest, child.size)? => Ok(false),
            _ => Err(inconsistent(
                carried.image,
                format!("{digest} needs {}, which the bundle does not list for it", child.digest),
            )),
        }
    }

    /// A top or child of another media type is not walked, but must be the JSON
    /// document it is listed as.
    fn visit(&mut self, node: &Node) -> Result<()> {
        if matches!(node.doc, Doc::Blob) && matches!(node.role, Role::Top | Role::Child) {
            self.0.manifest(node.blob, node.role)?;
        }
        Ok(())
    }
}

fn inconsistent(image: &Image, why: String) -> crate::error::Error {
    integrity(format!(
        "the signed image list is inconsistent: image {} ({}): {why}; nothing was published",
        image.reference.as_deref().unwrap_or("without a ref name"),
        image.digest
    ))
}
