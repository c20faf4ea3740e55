//! `pack --dry-run`: what a pack would write, without writing it. [`report`] counts the
//! plan's images by kind, its blobs and bytes (before dedupe, after it, after what the far
//! side holds), lays the items out as the writer would ([`DryLayout`]: the same volumes),
//! and says what is still to fetch. [`changes_since`] compares the plan's images with
//! earlier bundles' manifests ([`changes`]) and receipts ([`receipt_changes`]);
//! [`mapping`] writes oc-mirror's `mapping.txt` lines (`SOURCE=DESTINATION`).
//!
//! The figures equal what the real pack writes: the same [`Plan`] feeds both, and the
//! layout is the writer's own. To learn the stored size of a blob worth compressing
//! (configs, manifests), the few such blobs not yet cached are fetched first; layers are
//! never compressed, so their size is their descriptor's and they are not fetched.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::bundle::discs::{planned, PlannedDisc};
use crate::bundle::ids::VolumeId;
use crate::bundle::manifest::{Catalog, EntryKind, Image, Manifest, Release};
use crate::bundle::names;
use crate::bundle::reader::read_signed_manifest;
use crate::bundle::receipt::Receipt;
use crate::bundle::writer::{Compress, DryLayout, Settings};
use crate::digest::Digest;
use crate::error::Result;
use crate::oci::layout::BlobRef;
use crate::oci::names::{ImageRef, TRANSPORT};
use crate::openshift::graphdata::GRAPH_IMAGE_SOURCE;
use crate::size::Media;
use crate::source::registry::RegistrySource;
use crate::trip::delta::Have;
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
    /// Distinct layers left out: the far side holds them (`--have`, `--since`).
    pub omitted: usize,
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
    /// The size of each recovery volume (`--parity`), in order.
    pub parity_volumes: Vec<u64>,
    /// The bytes of every recovery volume.
    pub bytes_parity: u64,
    /// The discs the volumes, data and recovery, go on (`--media` naming a disc,
    /// `--disc-size`), with what each image takes at most.
    pub discs: Vec<PlannedDisc>,
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
    /// Media of `media`'s kind the volumes, data and recovery, take (one volume a medium for fat32).
    pub fn media(&self, media: Media) -> u64 {
        match self.discs.len() {
            0 => ((self.volumes.len() + self.parity_volumes.len()) as u64).div_ceil(media.volumes_per_medium()),
            n => n as u64,
        }
    }
}

/// The report of `plan`, whose registry blobs are `wanted` from `registry`; `settings`
/// are the writer's.
pub(crate) fn report(
    plan: &Plan,
    settings: Settings,
    registry: Option<&RegistrySource>,
    wanted: &[(ImageRef, BlobRef)],
) -> Result<Report> {
    let fetch = to_fetch(registry, wanted);
    if let Some(reg) = registry {
        // Their stored size depends on how well they compress.
        let compressed: HashSet<&Digest> = plan
            .items
            .iter()
            .filter(|i| i.kind == EntryKind::Blob && i.compress == Compress::IfItPays)
            .map(|i| &i.digest)
            .collect();
        let small: Vec<(ImageRef, BlobRef)> =
            wanted.iter().filter(|(_, b)| compressed.contains(&b.digest)).cloned().collect();
        reg.fetch_now(&small)?;
    }
    let (name, disc_spec, parity) = (settings.name.clone(), settings.discs, settings.parity);
    let mut layout = DryLayout::new(settings, plan.id.clone())?;
    for item in &plan.items {
        layout.add(item)?;
    }
    let volumes = layout.finish();
    // Every recovery volume is as long as the longest data volume.
    let parity_volumes = match parity {
        Some(amount) => vec![volumes.iter().copied().max().unwrap_or(0); amount.count(volumes.len())?],
        None => Vec::new(),
    };
    let discs = match disc_spec {
        Some(spec) => {
            let data = volumes.iter().enumerate().map(|(i, &size)| (names::volume_file(&name, VolumeId::new(i)), size));
            let recovery = parity_volumes.iter().enumerate().map(|(i, &size)| (names::parity_file(&name, i + 1), size));
            let named: Vec<(String, u64)> = data.chain(recovery).collect();
            planned(&name, &named, spec, &plan.shared_bound())?
        }
        None => Vec::new(),
    };
    let blobs: Vec<u64> = plan.items.iter().filter(|i| i.kind == EntryKind::Blob).map(|i| i.size).collect();
    let carried: u64 = blobs.iter().sum();
    // pack --have/--since: the layers the far side holds are left out of plan.items.
    let omitted: u64 = plan.omitted.iter().map(|o| o.size).sum();
    Ok(Report {
        images: kinds(&plan.images, &plan.releases, &plan.catalogs),
        blobs: blobs.len(),
        omitted: plan.omitted.len(),
        bytes_before_dedupe: plan.images.iter().map(|i| i.total_size).sum(),
        bytes_after_dedupe: carried + omitted,
        bytes_after_receipt: carried,
        bytes_in: plan.total(),
        bytes_stored: volumes.iter().sum(),
        volumes,
        bytes_parity: parity_volumes.iter().sum(),
        parity_volumes,
        discs,
        fetch,
    })
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

/// Images by kind, given the releases and catalogs that brought some of them.
fn kinds(images: &[Image], releases: &[Release], catalogs: &[Catalog]) -> Kinds {
    let components: HashSet<String> =
        releases.iter().flat_map(|r| r.components.iter().map(|c| format!("{TRANSPORT}{}", c.image))).collect();
    let operators: HashSet<String> =
        catalogs.iter().flat_map(|c| c.images.iter().map(|i| format!("{TRANSPORT}{i}"))).collect();
    let releases: HashSet<&str> = releases.iter().map(|r| r.source.as_str()).collect();
    let catalogs: HashSet<&Digest> = catalogs.iter().map(|c| c.rebuilt.as_ref().unwrap_or(&c.digest)).collect();
    let attached: HashSet<&Digest> = images.iter().flat_map(|i| i.attached.iter().map(|a| &a.digest)).collect();
    let mut kinds = Kinds { total: images.len(), ..Kinds::default() };
    for image in images {
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

/// What changed from an earlier bundle's images (or a receipt's tags) to the plan's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// The earlier bundle (its name and id) or the receipt (its destination and id).
    pub since: String,
    /// Images it did not have, under any digest.
    pub added: Vec<Named>,
    /// Images it had that the plan does not have, under any digest.
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

/// What changed since each earlier bundle (`--since`) and each receipt (`--have`) of
/// `have`, to `images`; each is read as the differential pack reads it (signatures
/// checked with the same keys).
pub fn changes_since(have: &Have, images: &[Image]) -> Result<Vec<Changes>> {
    let mut all = Vec::new();
    for path in &have.since {
        all.push(changes(&read_signed_manifest(path, &have.bundle_keys)?.manifest, images));
    }
    for path in &have.receipts {
        all.push(receipt_changes(&Receipt::load(path, &have.receipt_keys)?, images)?);
    }
    Ok(all)
}

/// What changed from the tags a receipt lists to `images`, each image under the tag it
/// gets at the receipt's destination (a registry: `REPO:TAG` as unpack maps it, under the
/// prefix of a `docker://HOST/PREFIX` destination; a layout: its ref name): added, a tag
/// the destination lacks; moved, a tag it holds for another digest; removed, a tag it
/// holds that no image of the plan sets (it stays there). `Named::source` is the tag.
pub fn receipt_changes(receipt: &Receipt, images: &[Image]) -> Result<Changes> {
    let registry = receipt.destination.starts_with(TRANSPORT)
        || receipt.blobs.iter().chain(&receipt.manifests).any(|h| h.repository.is_some());
    let prefix = match receipt.destination.starts_with(TRANSPORT) {
        true => Destination::parse(&receipt.destination)?.prefix,
        false => None,
    };
    let held: HashMap<&str, &Digest> = receipt.tags.iter().map(|t| (t.tag.as_str(), &t.digest)).collect();
    let mut changes =
        Changes { since: format!("receipt {} ({})", receipt.destination, receipt.id), ..Changes::default() };
    let mut set = HashSet::new();
    for image in images {
        let tag = match registry {
            true => {
                let t = mirror::target(image, prefix.as_deref())?;
                format!("{}:{}", t.repository, t.tag)
            }
            false => match &image.reference {
                Some(r) => r.clone(),
                None => continue,
            },
        };
        let named = Named { source: tag.clone(), reference: None, digest: image.digest.clone() };
        match held.get(tag.as_str()) {
            None => changes.added.push(named),
            Some(&from) if *from != image.digest => changes.moved.push(Moved {
                source: image.source.clone(),
                reference: Some(tag.clone()),
                from: from.clone(),
                to: image.digest.clone(),
            }),
            Some(_) => {}
        }
        set.insert(tag);
    }
    changes.removed = receipt
        .tags
        .iter()
        .filter(|t| !set.contains(&t.tag))
        .map(|t| Named { source: t.tag.clone(), reference: None, digest: t.digest.clone() })
        .collect();
    Ok(changes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::{Attached, AttachedKind, Component};

    fn image(source: &str, reference: Option<&str>, n: u8) -> Image {
        Image { reference: reference.map(str::to_string), ..Image::example(source, n) }
    }

    fn manifest(images: Vec<Image>) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": "airlift", "version": 1, "id": "0123456789abcdef0123456789abcdef", "name": "trip1",
            "sequence": 1, "created": 1, "expires": null, "tool": "airlift 0", "volume_size": 1 << 20,
            "chunk_size": 1 << 20, "images": images, "entries": [], "volumes": [], "chunks": [],
        }))
        .unwrap()
    }

    #[test]
    fn changes_list_added_removed_and_moved_images() {
        let old = manifest(vec![
            image("docker://q.io/ns/app:1.0", None, 1),
            image("docker://q.io/ns/gone:1", None, 2),
            image("oci:/srv/l", Some("a"), 3),
            image("oci:/srv/l", Some("b"), 4),
        ]);
        let new = [
            image("docker://q.io/ns/app:1.0", None, 5),
            image("oci:/srv/l", Some("a"), 3),
            image("oci:/srv/l", Some("c"), 4),
            image("docker://q.io/ns/new@sha256:00", None, 6),
        ];
        let c = changes(&old, &new);
        assert_eq!(c.since, "trip1 (0123456789abcdef0123456789abcdef)");
        let named =
            |i: &Image| Named { source: i.source.clone(), reference: i.reference.clone(), digest: i.digest.clone() };
        assert_eq!(c.added, [named(&new[2]), named(&new[3])]);
        assert_eq!(c.removed, [named(&old.images[1]), named(&old.images[3])]);
        assert_eq!(
            c.moved,
            [Moved { source: new[0].source.clone(), reference: None, from: Digest::of(&[1]), to: Digest::of(&[5]) }]
        );
        assert_eq!(changes(&old, &old.images), Changes { since: c.since.clone(), ..Changes::default() });
    }

    #[test]
    fn receipt_changes_compare_the_tags_the_destination_holds() {
        use crate::bundle::receipt::{Held, HeldTag};
        let app = image("docker://q.io/ns/app:1.0", None, 1);
        let tool = image("docker://q.io/ns/tool:2", None, 2);
        let new = image("docker://q.io/ns/new:1", None, 3);
        let tag = |t: &str, n: u8| HeldTag { tag: t.into(), digest: Digest::of(&[n]) };
        let held = |n: u8| Held { digest: Digest::of(&[n]), size: 1, repository: Some("site/ns/app".into()) };
        let receipt = Receipt::new(
            "docker://mirror.example/site".into(),
            vec![held(1)],
            vec![],
            vec![tag("site/ns/app:1.0", 1), tag("site/ns/tool:2", 9), tag("site/ns/old:1", 7)],
        );
        let c = receipt_changes(&receipt, &[app, tool.clone(), new.clone()]).unwrap();
        assert_eq!(c.since, format!("receipt docker://mirror.example/site ({})", receipt.id));
        assert_eq!(c.added, [Named { source: "site/ns/new:1".into(), reference: None, digest: new.digest }]);
        assert_eq!(
            c.moved,
            [Moved {
                source: tool.source,
                reference: Some("site/ns/tool:2".into()),
                from: Digest::of(&[9]),
                to: tool.digest
            }]
        );
        assert_eq!(c.removed, [Named { source: "site/ns/old:1".into(), reference: None, digest: Digest::of(&[7]) }]);

        // A layout's tags are its ref names; an image without one gets none.
        let layout = Receipt::new("/srv/layout".into(), vec![], vec![], vec![tag("x", 4)]);
        let images = [image("oci:/a", Some("x"), 5), image("oci:/b", None, 6)];
        let c = receipt_changes(&layout, &images).unwrap();
        assert!(c.added.is_empty() && c.removed.is_empty(), "{c:?}");
        assert_eq!(c.moved.len(), 1);
    }

    #[test]
    fn images_are_counted_once_under_the_kind_that_brought_them() {
        let mut release = image("docker://q.io/ocp/release:4.16.3-x86_64", None, 1);
        release.attached = vec![Attached { kind: AttachedKind::Signature, digest: Digest::of(&[9]) }];
        let images = [
            release,
            image("docker://q.io/ocp/art@sha256:aa", None, 2),
            image("docker://q.io/op/index:v4", None, 3),
            image("docker://q.io/op/bundle@sha256:bb", None, 4),
            image("docker://q.io/ocp/release:sha256-01.sig", None, 9),
            image(GRAPH_IMAGE_SOURCE, None, 5),
            image("docker://q.io/extra/app:1", None, 6),
            image("oci:/srv/layout", Some("x"), 7),
        ];
        let releases: Vec<Release> = serde_json::from_value(serde_json::json!([{
            "source": images[0].source, "version": "4.16.3", "digest": images[0].digest,
            "architectures": ["x86_64"], "components": [Component { name: "cli".into(), image: "q.io/ocp/art@sha256:aa".into() }],
            "signatures": [],
        }]))
        .unwrap();
        let catalogs: Vec<Catalog> = serde_json::from_value(serde_json::json!([{
            "source": "docker://q.io/op/index:v4", "digest": Digest::of(&[8]), "filter": {}, "rebuilt": images[2].digest,
            "target": "q.io/op/index:v4", "bundles": [], "images": ["q.io/op/bundle@sha256:bb"],
        }]))
        .unwrap();
        let want = Kinds {
            total: 8,
            releases: 1,
            release_components: 1,
            catalogs: 1,
            operators: 1,
            attached: 1,
            graph: 1,
            additional: 2,
        };
        assert_eq!(kinds(&images, &releases, &catalogs), want);
    }

    #[test]
    fn mapping_lines_name_the_source_and_the_reference_unpack_publishes() {
        let tagged = image("docker://q.io/ns/app:1.0", None, 1);
        let by_digest = image(&format!("docker://q.io/ns/tool@{}", Digest::of(&[2])), None, 2);
        let layout = image("oci:/srv/ocp:4.16", Some("4.16"), 3);
        let dest = Destination::parse("docker://mirror.example:5000/site").unwrap();
        let text = mapping(&[tagged, by_digest, layout], &dest).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "docker://q.io/ns/app:1.0=docker://mirror.example:5000/site/ns/app:1.0".to_string(),
                format!("docker://q.io/ns/tool@{0}=docker://mirror.example:5000/site/ns/tool@{0}", Digest::of(&[2])),
                "oci:/srv/ocp:4.16=docker://mirror.example:5000/site/ocp:4.16".to_string(),
            ]
        );
        let placeholder = Destination::parse(PLACEHOLDER_DEST).unwrap();
        assert_eq!(placeholder.registry, "mirror.invalid:8443");
        assert!(placeholder.prefix.is_none());
    }
}
