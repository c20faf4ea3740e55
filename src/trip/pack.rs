//! `pack`'s library: [`Plan::resolve`] turns sources (registry images, OCI layouts,
//! OpenShift releases, an image set file, included files) into the bundle's images,
//! items and releases and its id; [`Plan::write`] runs the fetch→volume pipeline: a
//! registry image's blobs are fetched into the cache while the bundle is written, each
//! stored as soon as it is there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::bundle::discs::{self, DiscSpec};
use crate::bundle::ids::VolumeId;
use crate::bundle::images::{write_images, DiscImage, Images};
use crate::bundle::manifest::{Base, Catalog, Channel as ChannelRecord, EntryKind, Image, Manifest, Omitted, Release};
use crate::bundle::names;
use crate::bundle::parity::Amount;
use crate::bundle::tar::{padded, BLOCK, END_OF_ARCHIVE};
use crate::bundle::writer::{BundleWriter, Compress, Content, Contents, Item, Settings};
use crate::digest::{Digest, Hasher};
use crate::error::{usage, IoContext};
use crate::iso9660::Meta;
use crate::minisign::SecretKey;
use crate::oci::layout::BlobRef;
use crate::oci::layout::{LayoutSource, ResolvedImage, SourceLayout};
use crate::oci::names::{ImageRef, TRANSPORT};
use crate::oci::{self, index_json};
use crate::openshift::graphdata;
use crate::openshift::imageset::{self, ImageSet};
use crate::openshift::release::{self, Payload};
use crate::openshift::signatures::{self, ReleaseKeys};
use crate::progress::Progress;
use crate::source::registry::RegistrySource;
use crate::source::registry::{default_cache_dir, read_images_file, Arrival, Arrivals, FetchReport};
use crate::space::Needs;
use crate::store;
use crate::trip::attached;
use crate::trip::catalogs::{self, pack_catalogs};
use crate::trip::delta::{self, Held};
use crate::trip::releases::{self, GraphOptions};
use crate::trip::{During, Error, Result};

/// What to pack.
pub struct Request {
    /// Sources given as arguments: `docker://…`, `oci:DIR[:REF]`.
    pub sources: Vec<String>,
    /// Files listing more sources (`--images`).
    pub image_files: Vec<PathBuf>,
    /// Release images (`--release`), with their transport.
    pub releases: Vec<String>,
    /// An oc-mirror image set file (`--config`).
    pub config: Option<PathBuf>,
    /// Files carried as `files/NAME` (`--include`).
    pub include: Vec<PathBuf>,
    /// Release signature files (`--release-signature`).
    pub release_signatures: Vec<PathBuf>,
    /// The signature store to fetch release signatures from (`--release-signature-url`).
    pub release_signature_url: Option<String>,
    /// OpenPGP keys release signatures must verify with (`--release-key`).
    pub release_keys: Vec<PathBuf>,
    /// Carry this airlift binary as the registry installer.
    pub installer: bool,
    /// Where the image set's release channels find their update graph.
    pub graph: GraphOptions,
    /// The graph-data tarball of `graph: true` (`--graph-data`).
    pub graph_data: Option<PathBuf>,
    /// `--signatures`: what is attached to registry images is looked for and packed
    /// (else the image set's policy, else optional).
    pub signatures: Option<attached::Policy>,
    /// `--sigstore-key`: the carried cosign signatures must verify with these.
    pub sigstore: Option<attached::Keys>,
    /// What the destination holds already (`--have`, `--since`): a differential bundle.
    pub have: delta::Have,
    pub registry: RegistryOptions,
}

/// How registry sources are fetched.
pub struct RegistryOptions {
    pub client: crate::client::Options,
    /// The blob cache; the default cache directory when `None`.
    pub cache: Option<PathBuf>,
    pub parallel: usize,
    /// `--platform`s (all when empty).
    pub platforms: Vec<String>,
}

/// The bundle to write: where, its name, and its numbers.
pub struct Shape {
    pub out: PathBuf,
    pub name: String,
    /// Replace a bundle of the same name in `out`.
    pub force: bool,
    /// `--sequence`; else the creation time.
    pub sequence: Option<u64>,
    pub created: u64,
    /// Seconds from now the bundle expires.
    pub expires_in: Option<u64>,
    pub volume_size: u64,
    pub chunk_size: u64,
    /// Recovery volumes (`--parity`).
    pub parity: Option<Amount>,
    /// The discs the volumes go on (`--media` naming a disc, `--disc-size`).
    pub discs: Option<DiscShape>,
}

/// Discs the bundle is laid out for.
#[derive(Debug, Clone, Copy)]
pub struct DiscShape {
    /// Bytes one disc holds.
    pub capacity: u64,
    /// Volumes a disc (the preset's, or [`crate::size::disc_volumes`]).
    pub per_disc: usize,
    /// `--volume-size` was given: it stays, as many volumes as fit go on a disc, and a size
    /// that cannot fit beside what every disc carries is refused; otherwise the volume
    /// size is lowered until `per_disc` volumes fit.
    pub fixed_volume_size: bool,
    /// `--iso`: write one image per disc.
    pub iso: bool,
    /// `--keep-volumes`: keep the volume files once their disc's image is written.
    pub keep_volumes: bool,
}

/// What resolving tells as it goes.
pub enum Note<'a> {
    /// A warning about the image set file.
    Warning(&'a str),
    /// A release payload was read: (source, version, number of components).
    Release(&'a str, &'a str, usize),
    /// An operator catalog was pinned: (source, digest, the bytes of its blobs), fetched
    /// and read next.
    CatalogImage(&'a str, &'a Digest, u64),
    /// A release signature was checked: (release, its URL or file, the key file that
    /// verified it; `None`: no `--release-key`, unverified).
    ReleaseSignature(&'a str, &'a str, Option<&'a Path>),
    /// What filtering a catalog (its source) found or did.
    Catalog(&'a str, &'a crate::catalog::select::Note),
    /// A release channel was resolved against the update graph.
    Channel(&'a ChannelRecord),
}

/// Everything the bundle will hold, ready to write.
pub struct Plan {
    pub images: Vec<Image>,
    /// In bundle order: the installer, included files and release signatures, the
    /// layout's own files, then the blobs.
    pub items: Vec<Item>,
    pub releases: Vec<Release>,
    pub catalogs: Vec<Catalog>,
    /// The release channels the releases were resolved from.
    pub channels: Vec<ChannelRecord>,
    /// What the omitted blobs are expected from (`--have`, `--since`).
    pub bases: Vec<Base>,
    /// The layers left out of `items`: the destination holds them already.
    pub omitted: Vec<Omitted>,
    pub id: String,
    pub settings: Settings,
    /// The discs asked for, if any (the layout chosen is `settings.discs`).
    pub discs: Option<DiscShape>,
    registry: Option<RegistrySource>,
    /// The registry blobs to fetch, with the image that needs each.
    wanted: Vec<(ImageRef, BlobRef)>,
}

/// A written bundle.
pub struct Packed {
    pub manifest: Manifest,
    /// The disc images written (`--iso`).
    pub images: Vec<DiscImage>,
    /// How the registry blobs were obtained, and the cache they are in.
    pub fetch: Option<(FetchReport, PathBuf)>,
}

/// Every source, resolved: (source, image, the store its blobs are in).
type Resolved<'s> = Vec<(&'s str, ResolvedImage, PathBuf)>;

impl Plan {
    /// Resolve every source; blobs shared by images are stored once. Releases come
    /// first: a release image's payload names its components, which are packed with it.
    /// Registry images are resolved together (manifests only, several at a time).
    pub fn resolve(request: &Request, mut shape: Shape, key_id: &[u8; 8], note: &dyn Fn(Note)) -> Result<Plan> {
        if !shape.force {
            refuse_existing_bundle(&shape.out, &shape.name)?;
        }
        let mut items = front_items(request)?;
        // A volume size that cannot fit a disc beside the executable is refused now.
        fit_discs(&mut shape, &items, &[])?;
        let held = Held::load(&request.have)?;
        let (sources, mut release_sources, imageset) = all_sources(request, note)?;
        let channels = resolve_channels(imageset.as_ref(), request, &mut release_sources, note)?;
        let operators = imageset.as_ref().is_some_and(|set| !set.operators.is_empty() || set.graph);
        let registry = if operators || !release_sources.is_empty() || sources.iter().any(|s| s.starts_with(TRANSPORT)) {
            Some(registry_source(&request.registry)?)
        } else {
            None
        };
        let payloads = read_releases(&release_sources, registry.as_ref(), imageset.as_ref(), request, note)?;
        let mut all = release_sources.clone();
        all.extend(payloads.iter().flat_map(|p| p.components.iter().map(|c| format!("{TRANSPORT}{}", c.image))));
        all.extend(sources);
        dedup(&mut all);
        let packed_catalogs = match (&imageset, &registry, &request.config) {
            (Some(set), Some(reg), Some(config)) => pack_catalogs(set, config, reg, &request.registry, note)?,
            _ => Vec::new(),
        };
        // A catalog's image is the one packed under its target, whatever else names it.
        all.retain(|s| !packed_catalogs.iter().any(|c| c.images.first().is_some_and(|(carried, _)| carried == s)));
        let own = own_platforms(imageset.as_ref(), &release_sources, &payloads);
        all.retain(|s| !own.values().any(|group| group.contains(s)));
        let (mut resolved, mut wanted) = resolve_images(&all, registry.as_ref())?;
        if let Some(reg) = &registry {
            resolve_own_platforms(&own, reg, &request.registry, &mut resolved, &mut wanted)?;
        }
        if let Some(set) = &imageset {
            retarget(&mut resolved, set);
        }
        if let Some(reg) = &registry {
            add_catalog_images(&packed_catalogs, &all, reg.cache().root(), &mut resolved, &mut wanted)?;
            if imageset.as_ref().is_some_and(|set| set.graph) {
                let image = graph_image(request, reg.cache(), note)?;
                resolved.push((graphdata::GRAPH_IMAGE_SOURCE, image, reg.cache().root().to_path_buf()));
            }
        }
        let catalogs: Vec<Catalog> = packed_catalogs.iter().map(|c| c.record.clone()).collect();
        let subjects = resolved.len();
        let built = built_here(&resolved, &catalogs);
        let (policy, keys) = attached::settings(request, imageset.as_ref())?;
        let found = match &registry {
            Some(reg) if policy != attached::Policy::Skip => {
                // Nothing is attached to an image built here in any registry.
                let of: Vec<(&str, &Digest)> = resolved
                    .iter()
                    .map(|(s, img, _)| (if built.contains(&img.digest) { "" } else { *s }, &img.digest))
                    .collect();
                attached::discover(reg, &of, request.registry.parallel)?
            }
            _ => Vec::new(),
        };
        let mut artifacts: Vec<String> = found.iter().map(|f| f.source.clone()).collect();
        dedup(&mut artifacts);
        artifacts.retain(|a| !all.contains(a));
        let (more, more_wanted) = resolve_images(&artifacts, registry.as_ref())?;
        resolved.extend(more);
        wanted.extend(more_wanted);
        let (mut images, blobs, layers) = images_and_blobs(resolved);
        let warn = |w: &str| note(Note::Warning(w));
        attached::record(&mut images, subjects, &found, policy, &release_sources, &built, &warn)?;
        if let (Some(reg), Some(keys)) = (&registry, &keys) {
            attached::verify_at_pack(reg, &images, &wanted, keys)?;
        }

        let mut releases = releases(&release_sources, payloads, &images)?;
        items.extend(release_signatures(request, &mut releases, note)?);
        items.extend(layout_items(&images));
        items.extend(blobs);
        let (bases, omitted) = held.omit(&mut items, &layers, &mut wanted);

        let (id, settings, discs) = finish_shape(shape, key_id, (&items, &images), (&catalogs, &omitted))?;
        Ok(Plan { images, items, releases, catalogs, channels, bases, omitted, id, settings, discs, registry, wanted })
    }

    /// The bytes of every item.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|i| i.size).sum()
    }

    /// What [`Plan::write`] would write, writing nothing: see [`crate::trip::plan`].
    pub fn dry_run(&self) -> Result<crate::trip::plan::Report> {
        Ok(crate::trip::plan::report(self, self.settings.clone(), self.registry.as_ref(), &self.wanted)?)
    }

    /// Refuse (exit 2) when the filesystems of `--out` and of the blob cache lack room
    /// for what writing the bundle puts there: its volumes (an upper bound, see
    /// [`volumes_bound`]; volumes a killed run of this bundle left are replaced one by
    /// one, so all but the largest count as free), the largest compressed item's temp
    /// file, the manifest, the disc images (`--iso`: see [`images_bound`]), and the
    /// registry blobs not in the cache yet.
    pub fn check_space(&self) -> Result<()> {
        let s = &self.settings;
        let mut needs = Needs::new();
        let (volume_bytes, volumes, chunks) = volumes_bound(&self.items, s);
        let old = old_volumes(&s.dir, &s.name);
        let replaced = old.iter().sum::<u64>() - old.iter().max().unwrap_or(&0);
        needs.add(&s.dir, "bundle volumes", volume_bytes.saturating_sub(replaced), volumes)?;
        let recovery = match s.parity {
            Some(amount) => amount.count(volumes as usize)? as u64,
            None => 0,
        };
        // Each recovery volume is as long as the longest data volume.
        needs.add(&s.dir, "recovery volumes", recovery * s.volume_size.min(volume_bytes), recovery)?;
        let compressed = self.items.iter().filter(|i| i.compress == Compress::IfItPays).map(|i| i.size).max();
        needs.add(&s.dir, "a compressed entry's temp file", compressed.unwrap_or(0), 1)?;
        needs.add(&s.dir, "the manifest", manifest_estimate(&self.items, &self.images, chunks), 4)?;
        if let (Some(shape), Some(spec)) = (self.discs.filter(|d| d.iso), s.discs) {
            let (bytes, files, what) = images_bound(&self.shared_bound(), s, shape, spec, volumes + recovery)?;
            needs.add(&s.dir, what, bytes, files)?;
        }
        if let Some(reg) = &self.registry {
            let cache = reg.cache();
            let mut seen = HashSet::new();
            let missing: Vec<u64> = (self.wanted.iter().map(|(_, b)| b))
                .filter(|b| seen.insert(&b.digest) && !cache.contains(&b.digest, b.size))
                .map(|b| b.size)
                .collect();
            needs.add(cache.root(), "blobs to fetch into the cache", missing.iter().sum(), missing.len() as u64)?;
        }
        Ok(needs.check()?)
    }

    /// Write and sign the bundle while the registry blobs are fetched.
    pub fn write(self, key: &SecretKey, progress: &dyn Progress, fetch_progress: &dyn Progress) -> Result<Packed> {
        let Plan { images, items, releases, catalogs, channels, bases, omitted, id, settings, discs, registry, wanted } =
            self;
        let dir = settings.dir.clone();
        let total = items.iter().map(|i| i.size).sum();
        let arrivals = Arrivals::new(wanted.iter().map(|(_, b)| b.digest.clone()));
        let (written, fetched) = std::thread::scope(|scope| {
            let fetcher = registry.as_ref().map(|reg| scope.spawn(|| reg.fetch(&wanted, fetch_progress, &arrivals)));
            progress.start("pack", total);
            let contents = Contents { images, releases, catalogs, channels, bases, omitted };
            let written = BundleWriter::new(settings, id, progress)
                .map_err(Error::from)
                .and_then(|writer| write_bundle(writer, &items, contents, key, &arrivals));
            if written.is_err() {
                arrivals.cancel();
            }
            let fetched =
                fetcher.map(|f| f.join().unwrap_or_else(|_| Err(usage("internal: the fetch thread panicked"))));
            (written, fetched)
        });
        progress.finish();
        // The writer's own failure comes first (the fetch was stopped because of it); a
        // blob the fetch could not get stops the writer, and then the fetch's error says why.
        let writer_failed = written.as_ref().is_err_and(|e| !matches!(e, Error::Unfetched(_)));
        let fetch = match fetched {
            Some(Err(e)) if !writer_failed => return Err(Error::from(e).during("fetching blobs from registries")),
            Some(Ok(report)) => Some(report),
            _ => None,
        };
        let manifest = written?;
        let fetch = fetch.zip(registry.as_ref().map(|r| r.cache().root().to_path_buf()));
        let images = match discs.filter(|d| d.iso) {
            Some(shape) => {
                let executable = items.iter().find(|i| i.kind == EntryKind::Installer).and_then(|i| match &i.content {
                    Content::File(path) => Some(path.clone()),
                    Content::Bytes(_) => None,
                });
                let how = Images { dir: &dir, key: &key.public_key(), executable, keep_volumes: shape.keep_volumes };
                write_images(&manifest, &how, progress).during(|| "writing the disc images")?
            }
            None => Vec::new(),
        };
        Ok(Packed { manifest, images, fetch })
    }

    /// What every disc carries besides its volumes, at most (see [`discs::shared_bound`]).
    pub fn shared_bound(&self) -> Vec<Meta> {
        shared_bound(&self.items, &self.images, &self.settings)
    }
}

/// What every disc of a bundle of `items` and `images` written with `settings` carries
/// besides its volumes, at most.
fn shared_bound(items: &[Item], images: &[Image], settings: &Settings) -> Vec<Meta> {
    let installer = items.iter().find(|i| i.kind == EntryKind::Installer).map(|i| i.size);
    let (_, volumes, chunks) = volumes_bound(items, settings);
    discs::shared_bound(&settings.name, installer, manifest_estimate(items, images, chunks), volumes)
}

/// The bundle's id and the writer's settings, once the volume size and the volumes per
/// disc are chosen for what the bundle holds (see [`fit_discs`]).
fn finish_shape(
    mut shape: Shape,
    key_id: &[u8; 8],
    (items, images): (&[Item], &[Image]),
    recorded: (&[Catalog], &[Omitted]),
) -> Result<(String, Settings, Option<DiscShape>)> {
    let spec = fit_discs(&mut shape, items, images)?;
    let id = bundle_id(key_id, &shape, items, recorded);
    Ok((id, settings(&shape, spec), shape.discs))
}

/// Choose the volume size and the volumes per disc of `shape`'s discs (if any) for a
/// bundle of `items` and `images` (see [`discs::fit`]); the volume size is lowered in
/// `shape` when a preset's does not leave room for what every disc carries.
fn fit_discs(shape: &mut Shape, items: &[Item], images: &[Image]) -> Result<Option<DiscSpec>> {
    let Some(d) = shape.discs else { return Ok(None) };
    let shared = shared_bound(items, images, &settings(shape, None));
    let (volume_size, spec) =
        discs::fit(&shape.name, d.capacity, shape.volume_size, d.per_disc, d.fixed_volume_size, &shared)?;
    shape.volume_size = volume_size;
    Ok(Some(spec))
}

/// A generous estimate of the manifest's bytes for `items` in `chunks` chunks and `images`.
fn manifest_estimate(items: &[Item], images: &[Image], chunks: u64) -> u64 {
    let refs: u64 = images.iter().map(|i| i.blobs.len() as u64).sum();
    (chunks + items.len() as u64) * 1024 + refs * 256 + images.len() as u64 * 4096
}

/// What `--iso` adds to the bundle directory, at most: (bytes, files, what). Images of at
/// most `spec.per_disc` volumes and what every disc carries (`shared`), one a disc for
/// the `volumes` (at most) volumes; unless kept, each disc's volumes go once its image is
/// committed, so beside the bundle there is one image and, for each image already
/// written, the bytes it holds beyond its volumes.
fn images_bound(
    shared: &[Meta],
    s: &Settings,
    shape: DiscShape,
    spec: DiscSpec,
    volumes: u64,
) -> Result<(u64, u64, &'static str)> {
    let per = spec.per_disc.max(1) as u64;
    let image = discs::image_bound(&s.name, shared, spec.per_disc, s.volume_size)?.min(spec.capacity);
    let discs = volumes.div_ceil(per).max(1);
    if shape.keep_volumes {
        return Ok((image * discs, discs, "disc images"));
    }
    let beyond = image.saturating_sub(per * s.volume_size);
    Ok((image + (discs - 1) * beyond, discs, "disc images (each disc's volumes removed once its image is written)"))
}

/// The images this pack builds (rebuilt catalogs, the graph-data image): no registry has
/// them, nor anything attached to them.
fn built_here(resolved: &Resolved, catalogs: &[Catalog]) -> HashSet<Digest> {
    resolved
        .iter()
        .filter(|(s, _, _)| *s == graphdata::GRAPH_IMAGE_SOURCE)
        .map(|(_, img, _)| img.digest.clone())
        .chain(catalogs.iter().filter_map(|c| c.rebuilt.clone()))
        .collect()
}

/// The writer's settings for a bundle of `shape` laid out on discs by `discs`.
fn settings(shape: &Shape, discs: Option<DiscSpec>) -> Settings {
    Settings {
        dir: shape.out.clone(),
        name: shape.name.clone(),
        sequence: shape.sequence.unwrap_or(shape.created),
        created: shape.created,
        // From now: SOURCE_DATE_EPOCH fixes the creation time (reproducible), but a
        // bundle made today from an old commit must not be born expired.
        expires: shape.expires_in.map(|d| crate::time::now().saturating_add(d)),
        volume_size: shape.volume_size,
        chunk_size: shape.chunk_size,
        discs,
        parity: shape.parity,
    }
}

/// The sources to resolve, the release sources (both in order, without repeats) and the
/// image set file, if any.
fn all_sources(request: &Request, note: &dyn Fn(Note)) -> Result<(Vec<String>, Vec<String>, Option<ImageSet>)> {
    let mut sources = request.sources.clone();
    for file in &request.image_files {
        let listed = read_images_file(file)?;
        if listed.is_empty() {
            return Err(usage(format!("--images {}: lists no image", file.display())).into());
        }
        sources.extend(listed);
    }
    let mut release_sources = request.releases.clone();
    let imageset = request.config.as_deref().map(imageset::load).transpose()?;
    if let Some(set) = &imageset {
        set.warnings.iter().for_each(|w| note(Note::Warning(w)));
        release_sources.extend(set.releases.iter().cloned());
        sources.extend(set.additional.iter().cloned());
    }
    dedup(&mut release_sources);
    let catalogs_or_channels =
        imageset.as_ref().is_some_and(|set| !set.operators.is_empty() || !set.channels.list.is_empty());
    if sources.is_empty() && release_sources.is_empty() && !catalogs_or_channels {
        return Err(usage("nothing to pack: give SOURCE, --images, --release or --config").into());
    }
    if let Some(bad) = sources.iter().chain(&release_sources).find(|s| s.contains("://") && !s.starts_with(TRANSPORT)) {
        return Err(usage(format!(
            "unsupported source '{bad}': use docker://HOST/REPO[:TAG|@DIGEST], oci:PATH or oci:PATH:REF"
        ))
        .into());
    }
    Ok((sources, release_sources, imageset))
}

/// The image set's release channels resolved against the update graph: their release
/// images join `release_sources` (without repeats), and their records are returned.
fn resolve_channels(
    imageset: Option<&ImageSet>,
    request: &Request,
    release_sources: &mut Vec<String>,
    note: &dyn Fn(Note),
) -> Result<Vec<ChannelRecord>> {
    let Some(set) = imageset.filter(|set| !set.channels.list.is_empty()) else { return Ok(Vec::new()) };
    let cache = match &request.registry.cache {
        Some(dir) => dir.clone(),
        None => default_cache_dir()?,
    };
    let warn = |w: &str| note(Note::Warning(w));
    let resolved = releases::resolve(&set.channels, &request.graph, &request.registry.client, &cache, &warn)?;
    resolved.channels.iter().for_each(|c| note(Note::Channel(c)));
    release_sources.extend(resolved.releases);
    dedup(release_sources);
    Ok(resolved.channels)
}

/// Every release's payload; a release whose component the image set blocks is refused.
fn read_releases(
    release_sources: &[String],
    registry: Option<&RegistrySource>,
    imageset: Option<&ImageSet>,
    request: &Request,
    note: &dyn Fn(Note),
) -> Result<Vec<Payload>> {
    let mut payloads = Vec::new();
    for source in release_sources {
        let mut payload = read_release(source, registry).during(|| format!("reading release {source}"))?;
        if let Some(set) = imageset.filter(|set| !set.kube_virt.is_empty()) {
            // oc-mirror's kubeVirtContainer: release content, mirrored as components are.
            payload.components.extend(release::kubevirt_images(source, &payload, &set.kube_virt)?);
        }
        if let Some(set) = imageset {
            if let Some(c) = payload.components.iter().find(|c| set.is_blocked(&c.image)) {
                return Err(usage(format!(
                    "{}: blockedImages blocks {} ({}), a component of release {}: a release is mirrored whole",
                    request.config.as_deref().unwrap_or(Path::new("")).display(),
                    c.name,
                    c.image,
                    payload.version
                ))
                .into());
            }
        }
        note(Note::Release(source, &payload.version, payload.components.len()));
        payloads.push(payload);
    }
    Ok(payloads)
}

/// Resolve every source in order: registry images together, layouts one by one; with
/// the registry blobs to fetch.
fn resolve_images<'s>(
    sources: &'s [String],
    registry: Option<&RegistrySource>,
) -> Result<(Resolved<'s>, Vec<(ImageRef, BlobRef)>)> {
    let registry_refs: Vec<ImageRef> = sources
        .iter()
        .filter(|s| s.starts_with(TRANSPORT))
        .map(|s| ImageRef::parse(s))
        .collect::<crate::error::Result<_>>()?;
    let mut from_registry = match registry {
        Some(reg) => registry_refs.iter().cloned().zip(reg.resolve_all(&registry_refs)?).collect(),
        None => Vec::new(),
    }
    .into_iter();
    let mut resolved = Vec::new();
    let mut wanted = Vec::new();
    for source in sources {
        match (registry, source.starts_with(TRANSPORT)) {
            (Some(reg), true) => {
                let (image, img) =
                    from_registry.next().ok_or_else(|| usage(format!("internal: {source} was not resolved")))?;
                wanted.extend(img.blobs.iter().map(|b| (image.clone(), b.clone())));
                resolved.push((source.as_str(), img, reg.cache().root().to_path_buf()));
            }
            _ => {
                let parsed = LayoutSource::parse(source)?;
                let layout = SourceLayout::open(&parsed.path)?;
                let images = layout.images(parsed.reference.as_deref()).during(|| format!("resolving {source}"))?;
                for img in images {
                    resolved.push((source.as_str(), img, layout.root().to_path_buf()));
                }
            }
        }
    }
    Ok((resolved, wanted))
}

/// The sources resolved with platforms of their own, grouped by those platforms: the
/// additional images given `platforms`, and, with `platform.platforms`, every release and
/// its components (each source once, the release's platforms first).
fn own_platforms(set: Option<&ImageSet>, releases: &[String], payloads: &[Payload]) -> Groups {
    let mut groups = Groups::new();
    let Some(set) = set else { return groups };
    let mut seen = HashSet::new();
    let mut add = |platforms: &Vec<String>, source: String| {
        if seen.insert(source.clone()) {
            groups.entry(platforms.clone()).or_default().push(source);
        }
    };
    if !set.release_platforms.is_empty() {
        let components = payloads.iter().flat_map(|p| &p.components).map(|c| format!("{TRANSPORT}{}", c.image));
        releases.iter().cloned().chain(components).for_each(|s| add(&set.release_platforms, s));
    }
    set.platforms.iter().for_each(|(source, platforms)| add(platforms, source.clone()));
    groups
}

/// Platforms (`OS/ARCH[/VARIANT]`) → the sources that keep only those.
type Groups = std::collections::BTreeMap<Vec<String>, Vec<String>>;

/// Resolve each group of `own` keeping only its platforms (an index with none of them is
/// refused naming the image, as `--platform` does); blobs land in `reg`'s cache.
fn resolve_own_platforms<'s>(
    own: &'s Groups,
    reg: &RegistrySource,
    options: &RegistryOptions,
    resolved: &mut Resolved<'s>,
    wanted: &mut Vec<(ImageRef, BlobRef)>,
) -> Result<()> {
    for (platforms, sources) in own {
        let platforms = catalogs::parse_platforms(platforms)?;
        let one = RegistrySource::new(options.client.clone(), reg.cache().root(), platforms, options.parallel)?;
        let (r, w) = resolve_images(sources, Some(&one))?;
        resolved.extend(r);
        wanted.extend(w);
    }
    Ok(())
}

/// Additional images given targetRepo/targetTag are named by their whole target
/// (`HOST/REPO[:TAG]`), which mirror::target reads as where they land.
fn retarget(resolved: &mut Resolved, set: &ImageSet) {
    for (source, image, _) in resolved.iter_mut() {
        if let Some(target) = set.targets.get(*source) {
            image.reference = Some(target.clone());
        }
    }
}

/// Add each catalog's images (the catalog image, whose blobs are all in the cache, and
/// those its bundles bring) to what is resolved and fetched, each image once: one already
/// among `sources`, or brought by an earlier catalog, is not added again (catalog images
/// have targets of their own: none is among `sources`, no two are the same).
fn add_catalog_images<'s>(
    catalogs: &'s [catalogs::Packed],
    sources: &[String],
    cache: &Path,
    resolved: &mut Resolved<'s>,
    wanted: &mut Vec<(ImageRef, BlobRef)>,
) -> Result<()> {
    let mut seen: HashSet<&str> = sources.iter().map(String::as_str).collect();
    for (source, image) in catalogs.iter().flat_map(|c| &c.images) {
        if !seen.insert(source) {
            continue;
        }
        // A catalog from a layout was copied into the cache whole: nothing to fetch.
        if source.starts_with(TRANSPORT) {
            let reference = ImageRef::parse(source)?;
            wanted.extend(image.blobs.iter().map(|b| (reference.clone(), b.clone())));
        }
        resolved.push((source.as_str(), image.clone(), cache.to_path_buf()));
    }
    Ok(())
}

/// The graph-data image of `graph: true`, built into `cache` from `--graph-data` (else the
/// tarball fetched from the update service, kept in the cache) with this executable as its
/// copier (every blob in the cache: nothing to fetch).
fn graph_image(request: &Request, cache: &store::BlobStore, note: &dyn Fn(Note)) -> Result<ResolvedImage> {
    let tarball = match &request.graph_data {
        Some(file) => file.clone(),
        None => {
            let url = graphdata::graph_data_url(std::env::var(graphdata::UPDATE_URL_ENV).ok().as_deref());
            let client = crate::client::http::Client::new(request.registry.client.clone())?;
            graphdata::fetch(&client, &url, cache.root(), &|w| note(Note::Warning(w)))
                .during(|| "fetching the graph data for graph: true (or pass --graph-data FILE)")?
        }
    };
    let copier =
        std::env::current_exe().during(|| "finding the airlift executable to carry as the graph-data copier")?;
    graphdata::build(cache, &tarball, &copier).during(|| "building the graph-data image")
}

/// The bundle's images, an item for every distinct blob they need, and which of those
/// blobs are layers.
fn images_and_blobs(resolved: Resolved) -> (Vec<Image>, Vec<Item>, HashSet<Digest>) {
    let mut images = Vec::new();
    let mut items = Vec::new();
    let mut layers = HashSet::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    for (source, img, root) in resolved {
        for blob in &img.blobs {
            if oci::is_layer(&blob.media_type) {
                layers.insert(blob.digest.clone());
            }
            if seen.insert(blob.digest.clone()) {
                let compress = if oci::is_compressed(&blob.media_type) { Compress::Never } else { Compress::IfItPays };
                items.push(Item {
                    path: format!("{}{}", names::BLOBS_PREFIX, blob.digest.hex()),
                    kind: EntryKind::Blob,
                    mode: 0o644,
                    content: Content::File(store::blob_path(&root, &blob.digest)),
                    size: blob.size,
                    digest: blob.digest.clone(),
                    compress,
                });
            }
        }
        images.push(Image {
            source: source.to_string(),
            reference: img.reference.clone(),
            digest: img.digest.clone(),
            media_type: img.media_type.clone(),
            size: img.size,
            total_size: img.blobs.iter().map(|b| b.size).sum(),
            platforms: img.platforms.clone(),
            blobs: img.blobs.iter().map(|b| b.digest.clone()).collect(),
            attached: Vec::new(),
            signature: None,
        });
    }
    (images, items, layers)
}

/// The installer first (so the first medium carries it), then the included files.
fn front_items(request: &Request) -> Result<Vec<Item>> {
    let mut front = Vec::new();
    if request.installer {
        let exe = std::env::current_exe().during(|| "finding the airlift executable to carry as installer")?;
        front.push(Item {
            path: names::INSTALLER.into(),
            kind: EntryKind::Installer,
            mode: 0o755,
            size: std::fs::metadata(&exe).at(&exe)?.len(),
            digest: crate::digest::file_digest(&exe)?,
            content: Content::File(exe),
            compress: Compress::Never,
        });
    }
    let mut included = HashSet::new();
    for path in &request.include {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !names::valid_file_name(&name) || name == "airlift" || name.starts_with(SIGNATURE_PREFIX) {
            return Err(usage(format!(
                "--include {}: file names must be 1-64 letters, digits, '.', '_' or '-' (and not 'airlift' \
                 or {SIGNATURE_PREFIX}…)",
                path.display()
            ))
            .into());
        }
        if !included.insert(name.clone()) {
            return Err(
                usage(format!("--include {}: another included file is also named '{name}'", path.display())).into()
            );
        }
        front.push(file_item(path, &name, "--include")?);
    }
    Ok(front)
}

/// The packed releases: each with its image's digest and architectures.
fn releases(sources: &[String], payloads: Vec<Payload>, images: &[Image]) -> Result<Vec<Release>> {
    let mut releases = Vec::new();
    for (source, payload) in sources.iter().zip(payloads) {
        let image =
            images.iter().find(|i| &i.source == source).ok_or_else(|| usage("internal: release not resolved"))?;
        releases.push(Release {
            source: source.clone(),
            version: payload.version,
            digest: image.digest.clone(),
            architectures: image.platforms.iter().filter_map(|p| openshift_arch(p)).collect(),
            components: payload.components,
            signatures: Vec::new(),
        });
    }
    Ok(releases)
}

/// `oci-layout` and `index.json`: with them, the extracted volumes are an OCI layout.
fn layout_items(images: &[Image]) -> Vec<Item> {
    let layout_marker = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let index = index_json(&images.iter().map(crate::trip::index_entry).collect::<Vec<_>>());
    [(names::OCI_LAYOUT, layout_marker), (names::INDEX_JSON, index)]
        .into_iter()
        .map(|(path, bytes)| Item {
            path: path.into(),
            kind: EntryKind::Layout,
            mode: 0o644,
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
            content: Content::Bytes(bytes),
            compress: Compress::IfItPays,
        })
        .collect()
}

/// Refuse when `out` already holds a bundle called `name` (its manifest or the
/// manifest's signature: pack writes them last, so volumes alone are what a killed pack
/// left, and a rerun goes on over them): writing would replace its files and delete the
/// volumes the new bundle does not have. The refusal names every `NAME.*` file there.
fn refuse_existing_bundle(out: &Path, name: &str) -> crate::error::Result<()> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::error::Error::io(out, e)),
    };
    let prefix = format!("{name}.");
    let mut existing = Vec::new();
    for entry in entries {
        let file = entry.map_err(|e| crate::error::Error::io(out, e))?.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && !file.starts_with(store::TEMP_PREFIX) {
            existing.push(file);
        }
    }
    let manifest = names::manifest_file(name);
    let signature = names::signature_file(&manifest);
    if !existing.iter().any(|f| *f == manifest || *f == signature) {
        return Ok(());
    }
    existing.sort();
    Err(usage(format!(
        "{} already holds a bundle named '{name}' ({}): packing would replace it; use --force to replace it, \
         or another --out or --name",
        out.display(),
        existing.join(", ")
    )))
}

/// Write and sign the bundle, storing each registry blob as soon as the fetch has put it
/// in the cache.
fn write_bundle(
    mut writer: BundleWriter,
    items: &[Item],
    contents: Contents,
    key: &SecretKey,
    arrivals: &Arrivals,
) -> Result<Manifest> {
    for item in items {
        let stored = match arrivals.wait(&item.digest) {
            Arrival::Missing => return Err(Error::Unfetched(item.digest.clone())),
            Arrival::Fetched => writer.add_checked(item),
            Arrival::Present => writer.add(item),
        };
        stored.during(|| format!("storing {}", item.path))?;
    }
    Ok(writer.finish(contents, key)?)
}

/// Included files and release signatures are stored as `files/NAME`; signatures get
/// generated names with this prefix.
const SIGNATURE_PREFIX: &str = "release-signature-";

/// The release signature items: `--release-signature` files, then, when fetching is on
/// (`--release-signature-url` or `--release-key`), what the store holds for each release
/// that got no file. With keys every signature (files too) must verify and name its
/// release's digest, and a release without one is refused; without keys fetched ones must
/// still name the digest and travel with a warning, and a release without one warns.
fn release_signatures(request: &Request, releases: &mut [Release], note: &dyn Fn(Note)) -> Result<Vec<Item>> {
    let keys = ReleaseKeys::load(&request.release_keys)?;
    let mut items = Vec::new();
    for path in &request.release_signatures {
        let release = signed_release(path, releases)?;
        if !keys.is_empty() {
            let bytes = std::fs::read(path).at(path)?;
            let shown = path.display().to_string();
            let key = signatures::check(&keys, &bytes, &release.digest, &release.source, &shown)?;
            note(Note::ReleaseSignature(&release.source, &shown, key));
        }
        let item = file_item(path, &signature_name(release), "--release-signature")?;
        release.signatures.push(item.path.clone());
        items.push(item);
    }
    let store = match (&request.release_signature_url, keys.is_empty()) {
        (Some(url), _) => url.as_str(),
        (None, false) => signatures::DEFAULT_STORE,
        (None, true) => return Ok(items),
    };
    let client = crate::client::Client::new(request.registry.client.clone())?;
    for release in releases.iter_mut().filter(|r| r.signatures.is_empty()) {
        let fetched = signatures::fetch(&client, store, &release.source, &release.digest)?;
        if fetched.is_empty() {
            let url = signatures::signature_url(store, &release.digest, 1);
            let missing = format!("release {}: no signature in the store ({url} is not there)", release.source);
            if !keys.is_empty() {
                return Err(usage(missing).into());
            }
            note(Note::Warning(&format!("{missing}; it travels unsigned")));
        }
        for (url, bytes) in fetched {
            let key = signatures::check(&keys, &bytes, &release.digest, &release.source, &url)?;
            note(Note::ReleaseSignature(&release.source, &url, key));
            let digest = Digest::of(&bytes);
            let name = signature_name(release);
            release.signatures.push(format!("{}{name}", names::FILES_PREFIX));
            items.push(Item {
                path: format!("{}{name}", names::FILES_PREFIX),
                kind: EntryKind::File,
                mode: 0o644,
                size: bytes.len() as u64,
                digest,
                content: Content::Bytes(bytes),
                compress: Compress::IfItPays,
            });
        }
    }
    Ok(items)
}

/// The bundle name of a release's next signature.
fn signature_name(release: &Release) -> String {
    format!("{SIGNATURE_PREFIX}{}-{}", &release.digest.hex()[..16], release.signatures.len() + 1)
}

/// An included file (`files/NAME`).
fn file_item(path: &Path, name: &str, option: &str) -> crate::error::Result<Item> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_file() {
        return Err(usage(format!("{option} {}: not a regular file", path.display())));
    }
    Ok(Item {
        path: format!("{}{name}", names::FILES_PREFIX),
        kind: EntryKind::File,
        mode: if is_executable(&meta) { 0o755 } else { 0o644 },
        size: meta.len(),
        digest: crate::digest::file_digest(path)?,
        content: Content::File(path.to_path_buf()),
        compress: Compress::IfItPays,
    })
}

/// The release a signature file belongs to: the one named by its directory when that
/// is `sha256=HEX` (as mirror.openshift.com lays signatures out), else the only release.
fn signed_release<'r>(path: &Path, releases: &'r mut [Release]) -> crate::error::Result<&'r mut Release> {
    let dir = path.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned());
    if let Some(hex) = dir.as_deref().and_then(|d| d.strip_prefix("sha256=")) {
        return releases.iter_mut().find(|r| r.digest.hex() == hex).ok_or_else(|| {
            usage(format!("--release-signature {}: no release packed has digest sha256:{hex}", path.display()))
        });
    }
    match releases {
        [only] => Ok(only),
        [] => Err(usage(format!("--release-signature {}: no release is packed (--release)", path.display()))),
        _ => Err(usage(format!(
            "--release-signature {}: several releases are packed; put the file in a directory named \
             sha256=HEX after the release it signs",
            path.display()
        ))),
    }
}

/// A release image's payload, read from its layers (fetched into the cache first when
/// it comes from a registry).
fn read_release(source: &str, registry: Option<&RegistrySource>) -> crate::error::Result<Payload> {
    if source.starts_with(TRANSPORT) {
        let reg = registry.ok_or_else(|| usage("internal: no registry client"))?;
        let image = ImageRef::parse(source)?;
        let resolved = reg.resolve(&image)?;
        let layers: Vec<_> = resolved.blobs.iter().filter(|b| oci::is_layer(&b.media_type)).cloned().collect();
        reg.fetch_now(&layers.iter().map(|b| (image.clone(), b.clone())).collect::<Vec<_>>())?;
        let paths: Vec<PathBuf> = layers.iter().map(|b| reg.cache().path(&b.digest)).collect();
        return release::read_payload(source, &paths);
    }
    let parsed = LayoutSource::parse(source)?;
    let layout = SourceLayout::open(&parsed.path)?;
    let images = layout.images(parsed.reference.as_deref())?;
    let [image] = &images[..] else {
        return Err(usage(format!("{source}: a release is one image; name it (oci:DIR:REF)")));
    };
    let paths: Vec<PathBuf> =
        image.blobs.iter().filter(|b| oci::is_layer(&b.media_type)).map(|b| layout.blob_path(&b.digest)).collect();
    release::read_payload(source, &paths)
}

/// OpenShift's name for a platform's architecture (`linux/amd64` → `x86_64`), as used in
/// release tags.
fn openshift_arch(platform: &str) -> Option<String> {
    let arch = platform.split('/').nth(1)?;
    Some(
        match arch {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => other,
        }
        .to_string(),
    )
}

/// Drop repeated entries, keeping the first of each.
fn dedup(list: &mut Vec<String>) {
    let mut seen = HashSet::new();
    list.retain(|s| seen.insert(s.clone()));
}

fn registry_source(options: &RegistryOptions) -> crate::error::Result<RegistrySource> {
    let platforms = catalogs::parse_platforms(&options.platforms)?;
    let cache = match &options.cache {
        Some(c) => c.clone(),
        None => default_cache_dir()?,
    };
    RegistrySource::new(options.client.clone(), &cache, platforms, options.parallel)
}

/// The bundle id: a hash of everything that determines the bundle's content, so the same
/// inputs give the same id (and the same bytes) and different bundles differ.
fn bundle_id(key_id: &[u8; 8], shape: &Shape, items: &[Item], (catalogs, omitted): (&[Catalog], &[Omitted])) -> String {
    let mut h = Hasher::new();
    h.update(b"airlift bundle id v1\0");
    h.update(key_id);
    h.update(shape.name.as_bytes());
    h.update(&shape.sequence.unwrap_or(shape.created).to_le_bytes());
    h.update(&shape.created.to_le_bytes());
    h.update(&shape.expires_in.map(|d| d + 1).unwrap_or(0).to_le_bytes());
    h.update(&shape.volume_size.to_le_bytes());
    h.update(&shape.chunk_size.to_le_bytes());
    // A bundle with parity differs from one without (ids of bundles without stay as they were).
    if let Some(parity) = shape.parity {
        h.update(format!("parity {parity:?}").as_bytes());
    }
    for item in items {
        h.update(item.path.as_bytes());
        h.update(&item.size.to_le_bytes());
        h.update(item.digest.hex().as_bytes());
    }
    // A catalog carried whole holds the same blobs whatever its filter says.
    for catalog in catalogs {
        h.update(catalog.filter.to_string().as_bytes());
    }
    // A differential bundle differs from the full one, and by what it relies on.
    for o in omitted {
        h.update(o.digest.hex().as_bytes());
        h.update(o.base.as_bytes());
    }
    h.finish().hex()[..32].to_string()
}

/// An upper bound of what the volumes of `items` take: (bytes, volumes, chunks). Every
/// item is counted stored whole (compression only ever makes an entry smaller), each of
/// its chunks with a header and padding; each volume with its label, its end blocks, the
/// extra part of the item its end splits, and the unused tail (under two blocks) that
/// makes the layout move on to the next volume.
fn volumes_bound(items: &[Item], s: &Settings) -> (u64, u64, u64) {
    let chunk = s.chunk_size.max(BLOCK);
    let parts: u64 = items.iter().map(|i| i.size.div_ceil(chunk).max(1)).sum();
    let entries = items.iter().map(|i| i.size).sum::<u64>() + parts * 2 * BLOCK;
    // The label: {"bundle":ID,"name":NAME,"sequence":N,"volume":N} and its header.
    let per_volume = BLOCK + padded(192 + s.name.len() as u64) + END_OF_ARCHIVE + 2 * BLOCK;
    let usable = s.volume_size.saturating_sub(per_volume + 2 * BLOCK).max(BLOCK);
    let volumes = entries.div_ceil(usable) + 1;
    (entries + volumes * per_volume, volumes, parts + 2 * volumes)
}

/// The sizes of the volumes of a bundle called `name` already in `dir` (a killed run's,
/// or the bundle `--force` replaces).
fn old_volumes(dir: &Path, name: &str) -> Vec<u64> {
    (0..)
        .map(|v| std::fs::metadata(dir.join(names::volume_file(name, VolumeId::new(v)))))
        .map_while(|meta| meta.ok().filter(|m| m.is_file()).map(|m| m.len()))
        .collect()
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize, size: usize) -> Item {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 + n * 7) as u8).collect();
        let digest = Digest::of(&bytes);
        Item {
            path: format!("{}{}", names::BLOBS_PREFIX, digest.hex()),
            kind: EntryKind::Blob,
            mode: 0o644,
            digest,
            size: size as u64,
            content: Content::Bytes(bytes),
            compress: Compress::Never,
        }
    }

    /// The bound holds over what the writer really writes: tiny volumes and chunks,
    /// empty items, items larger than a volume.
    #[test]
    fn the_volume_bound_is_above_what_the_writer_writes_and_close_to_it() {
        let (key, _) = SecretKey::generate().unwrap();
        let sizes = [0, 1, 511, 512, 513, 4096, 9000, 40_000, 100_000, 3, 70_000];
        for (volume_size, chunk_size) in
            [(16 << 10, 4 << 10), (64 << 10, 4 << 10), (256 << 10, 64 << 10), (1 << 30, 1 << 20)]
        {
            let dir = tempfile::tempdir().unwrap();
            let settings = || Settings {
                dir: dir.path().to_path_buf(),
                name: "bound".into(),
                sequence: 1,
                created: 1,
                expires: None,
                volume_size,
                chunk_size,
                discs: None,
                parity: None,
            };
            let items: Vec<Item> = sizes.iter().enumerate().map(|(n, &s)| item(n, s)).collect();
            let (bytes, volumes, chunks) = volumes_bound(&items, &settings());
            let mut writer = BundleWriter::new(settings(), "0".repeat(32), &crate::progress::Silent).unwrap();
            items.iter().for_each(|i| writer.add(i).unwrap());
            let manifest = writer.finish(Contents::default(), &key).unwrap();
            let written: u64 = manifest.volumes.iter().map(|v| v.size).sum();
            let shape = format!("volumes of {volume_size}, chunks of {chunk_size}");
            assert!(written <= bytes, "{shape}: {written} written, bound {bytes}");
            assert!(manifest.volumes.len() as u64 <= volumes, "{shape}: {} volumes", manifest.volumes.len());
            assert!(manifest.chunks.len() as u64 <= chunks, "{shape}: {} chunks", manifest.chunks.len());
            assert!(bytes - written <= written / 3 + 16 * BLOCK, "{shape}: {written} written, bound {bytes}");
        }
    }
}
