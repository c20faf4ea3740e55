//! `pack --dry-run`: what a pack would write, without writing it. [`report`] counts the
//! plan's images by kind, its blobs and bytes (before dedupe, after it, after what the far
//! side holds), lays the items out as the writer would ([`DryLayout`]: the same volumes),
//! and says what is still to fetch. [`changes`] compares the plan with an earlier bundle's
//! manifest; [`mapping`] writes oc-mirror's `mapping.txt` lines (`SOURCE=DESTINATION`).
//!
//! The figures equal what the real pack writes: the same [`Plan`] feeds both, and the
//! layout is the writer's own. To learn the stored size of a blob worth compressing
//! (configs, manifests), the few such blobs not yet cached are fetched first; layers are
//! never compressed, so their size is their descriptor's and they are not fetched.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::bundle::manifest::{EntryKind, Image, Manifest};
use crate::bundle::writer::{Compress, DryLayout, Settings};
use crate::digest::Digest;
use crate::error::Result;
use crate::oci::layout::BlobRef;
use crate::oci::names::{ImageRef, TRANSPORT};
use crate::openshift::graphdata::GRAPH_IMAGE_SOURCE;
use crate::size::Media;
use crate::source::registry::RegistrySource;
use crate::trip::mirror;
use crate::trip::pack::Plan;
use crate::trip::publish::Destination;

/// Where `--mapping` puts images when no `--mapping-dest` is given: a registry name that
/// cannot exist (`.invalid`), to be replaced by the mirror registry's.
pub const PLACEHOLDER_DEST: &str = "docker://mirror.invalid:8443";

/// What a pack of the plan would write.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub images: Kinds,
    /// Distinct blobs carried.
    pub blobs: usize,
    /// The sum over images of every blob they need (a blob shared by two counts twice).
    pub bytes_before_dedupe: u64,
    /// Every distinct blob once.
    pub bytes_after_dedupe: u64,
    /// Less the blobs the far side holds (`--have`, `--since`): what the bundle carries.
    pub bytes_after_receipt: u64,
    /// Every item of the bundle (blobs, the installer, files, the layout's own files):
    /// what pack reports as read.
    pub bytes_in: u64,
    /// The size of each volume, in order.
    pub volumes: Vec<u64>,
    /// The bytes of every volume.
    pub bytes_stored: u64,
    /// Registry blobs not yet in the cache when the dry run started.
    pub fetch: Fetch,
}

/// The images of a plan by what brought them; each image counts once, under the first
/// kind that applies in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kinds {
    pub total: usize,
    pub releases: usize,
    pub release_components: usize,
    pub catalogs: usize,
    /// Operator bundle images and the images they relate.
    pub operators: usize,
    /// Signatures, attestations, SBOMs and referrers attached to other images.
    pub attached: usize,
    /// The update graph's data image.
    pub graph: usize,
    /// Everything else: sources, `--images`, an image set's additionalImages.
    pub additional: usize,
}

/// Blobs still to download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Fetch {
    pub blobs: usize,
    pub bytes: u64,
}

impl Report {
    /// Media of `media`'s kind the volumes take (one volume a medium for fat32).
    pub fn media(&self, media: Media) -> u64 {
        (self.volumes.len() as u64).div_ceil(media.volumes_per_medium())
    }
}

/// The report of `plan`, whose registry blobs are `wanted` from `registry`; `settings`
/// and `id` are the writer's.
pub(crate) fn report(
    plan: &Plan,
    settings: Settings,
    registry: Option<&RegistrySource>,
    wanted: &[(ImageRef, BlobRef)],
) -> Result<Report> {
    let fetch = to_fetch(registry, wanted);
    if let Some(reg) = registry {
        // Their stored size depends on how well they compress.
        let small: Vec<(ImageRef, BlobRef)> =
            wanted.iter().filter(|(_, b)| compressed(plan, &b.digest)).cloned().collect();
        reg.fetch_now(&small)?;
    }
    let mut layout = DryLayout::new(settings, plan.id.clone())?;
    for item in &plan.items {
        layout.add(item)?;
    }
    let volumes = layout.finish();
    let blobs: Vec<u64> = plan.items.iter().filter(|i| i.kind == EntryKind::Blob).map(|i| i.size).collect();
    let carried: u64 = blobs.iter().sum();
    // pack --have/--since: the sizes of Plan.omitted, left out of plan.items (the one
    // place the differential pack's figure enters).
    let omitted: u64 = 0;
    Ok(Report {
        images: kinds(plan),
        blobs: blobs.len(),
        bytes_before_dedupe: plan.images.iter().map(|i| i.total_size).sum(),
        bytes_after_dedupe: carried + omitted,
        bytes_after_receipt: carried,
        bytes_in: plan.total(),
        bytes_stored: volumes.iter().sum(),
        volumes,
        fetch,
    })
}

/// Whether the writer tries to compress the item of blob `digest`.
fn compressed(plan: &Plan, digest: &Digest) -> bool {
    plan.items.iter().any(|i| i.kind == EntryKind::Blob && &i.digest == digest && i.compress == Compress::IfItPays)
}

/// The distinct `wanted` blobs the cache does not hold.
fn to_fetch(registry: Option<&RegistrySource>, wanted: &[(ImageRef, BlobRef)]) -> Fetch {
    let Some(reg) = registry else { return Fetch::default() };
    let mut seen = HashSet::new();
    let mut fetch = Fetch::default();
    for (_, blob) in wanted {
        if seen.insert(&blob.digest) && !reg.cache().contains(&blob.digest, blob.size) {
            fetch.blobs += 1;
            fetch.bytes += blob.size;
        }
    }
    fetch
}

/// The plan's images by kind.
fn kinds(plan: &Plan) -> Kinds {
    let releases: HashSet<&str> = plan.releases.iter().map(|r| r.source.as_str()).collect();
    let components: HashSet<String> =
        plan.releases.iter().flat_map(|r| r.components.iter().map(|c| format!("{TRANSPORT}{}", c.image))).collect();
    let catalogs: HashSet<&Digest> = plan.catalogs.iter().map(|c| c.rebuilt.as_ref().unwrap_or(&c.digest)).collect();
    let operators: HashSet<String> =
        plan.catalogs.iter().flat_map(|c| c.images.iter().map(|i| format!("{TRANSPORT}{i}"))).collect();
    let attached: HashSet<&Digest> = plan.images.iter().flat_map(|i| i.attached.iter().map(|a| &a.digest)).collect();
    let mut kinds = Kinds { total: plan.images.len(), ..Kinds::default() };
    for image in &plan.images {
        let count = if releases.contains(image.source.as_str()) {
            &mut kinds.releases
        } else if components.contains(&image.source) {
            &mut kinds.release_components
        } else if catalogs.contains(&image.digest) {
            &mut kinds.catalogs
        } else if operators.contains(&image.source) {
            &mut kinds.operators
        } else if attached.contains(&image.digest) {
            &mut kinds.attached
        } else if image.source == GRAPH_IMAGE_SOURCE {
            &mut kinds.graph
        } else {
            &mut kinds.additional
        };
        *count += 1;
    }
    kinds
}

/// What changed from an earlier bundle's images to the plan's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The earlier bundle: its name and id.
    pub since: String,
    /// Images the earlier bundle did not have, under any digest.
    pub added: Vec<Named>,
    /// Images of the earlier bundle the plan does not have, under any digest.
    pub removed: Vec<Named>,
    /// Images under the same source and reference, now another digest.
    pub moved: Vec<Moved>,
}

/// An image by source, reference name and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub source: String,
    pub reference: Option<String>,
    pub digest: Digest,
}

/// A source (and reference name) that now names another image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub source: String,
    pub reference: Option<String>,
    pub from: Digest,
    pub to: Digest,
}

/// Compare the earlier bundle `old` with `new_images`, each list in the order its
/// bundle has them.
pub fn changes(old: &Manifest, new_images: &[Image]) -> Changes {
    let key = |i: &'_ Image| -> (String, Option<String>) { (i.source.clone(), i.reference.clone()) };
    let digests = |images: &[Image]| -> HashMap<(String, Option<String>), HashSet<Digest>> {
        let mut map: HashMap<_, HashSet<Digest>> = HashMap::new();
        images.iter().for_each(|i| {
            map.entry(key(i)).or_default().insert(i.digest.clone());
        });
        map
    };
    let (before, after) = (digests(&old.images), digests(new_images));
    let named =
        |i: &Image| Named { source: i.source.clone(), reference: i.reference.clone(), digest: i.digest.clone() };
    let mut changes = Changes { since: format!("{} ({})", old.name, old.id), ..Changes::default() };
    for image in new_images {
        match before.get(&key(image)) {
            None => changes.added.push(named(image)),
            Some(was) if !was.contains(&image.digest) => changes.moved.push(Moved {
                source: image.source.clone(),
                reference: image.reference.clone(),
                from: was.iter().min().cloned().unwrap_or_else(|| image.digest.clone()),
                to: image.digest.clone(),
            }),
            Some(_) => {}
        }
    }
    changes.removed = old.images.iter().filter(|i| !after.contains_key(&key(i))).map(named).collect();
    changes
}

/// oc-mirror's `mapping.txt`: a line `SOURCE=docker://DESTINATION` for each image, the
/// destination being the reference unpack publishes it by in the registry `dest`
/// (`docker://HOST[:PORT][/PREFIX]`; the prefix is unpack's `--prefix`).
pub fn mapping(images: &[Image], dest: &Destination) -> Result<String> {
    let mut text = String::new();
    for image in images {
        let target = mirror::target(image, dest.prefix.as_deref())?;
        let reference = target.reference(&dest.registry, &image.digest);
        text.push_str(&format!("{}={TRANSPORT}{reference}\n", image.source));
    }
    Ok(text)
}
