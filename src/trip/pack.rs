//! `pack`'s library: [`Plan::resolve`] turns sources (registry images, OCI layouts,
//! OpenShift releases, an image set file, included files) into the bundle's images,
//! items and releases and its id; [`Plan::write`] runs the fetch→volume pipeline: a
//! registry image's blobs are fetched into the cache while the bundle is written, each
//! stored as soon as it is there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::bundle::manifest::{Catalog, EntryKind, Image, Manifest, Release};
use crate::bundle::names;
use crate::bundle::writer::{BundleWriter, Compress, Content, Item, Settings};
use crate::digest::{Digest, Hasher};
use crate::error::{usage, IoContext};
use crate::minisign::SecretKey;
use crate::oci::layout::BlobRef;
use crate::oci::layout::{LayoutSource, ResolvedImage, SourceLayout};
use crate::oci::names::{ImageRef, TRANSPORT};
use crate::oci::{self, index_json};
use crate::openshift::imageset::{self, ImageSet};
use crate::openshift::release::{self, Payload};
use crate::progress::{Progress, Silent};
use crate::source::registry::RegistrySource;
use crate::source::registry::{default_cache_dir, read_images_file, Arrival, Arrivals, FetchReport};
use crate::store;
use crate::trip::attached;
use crate::trip::catalogs::{self, pack_catalogs};
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
    /// Carry this airlift binary as the registry installer.
    pub installer: bool,
    /// `--signatures`: what is attached to registry images is looked for and packed
    /// (else the image set's policy, else optional).
    pub signatures: Option<attached::Policy>,
    /// `--sigstore-key`: the carried cosign signatures must verify with these.
    pub sigstore: Option<attached::Keys>,
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
    /// What filtering a catalog (its source) found or did.
    Catalog(&'a str, &'a crate::catalog::select::Note),
}

/// Everything the bundle will hold, ready to write.
pub struct Plan {
    pub images: Vec<Image>,
    /// In bundle order: the installer, included files and release signatures, the
    /// layout's own files, then the blobs.
    pub items: Vec<Item>,
    pub releases: Vec<Release>,
    pub catalogs: Vec<Catalog>,
    pub id: String,
    pub settings: Settings,
    registry: Option<RegistrySource>,
    /// The registry blobs to fetch, with the image that needs each.
    wanted: Vec<(ImageRef, BlobRef)>,
}

/// A written bundle.
pub struct Packed {
    pub manifest: Manifest,
    /// How the registry blobs were obtained, and the cache they are in.
    pub fetch: Option<(FetchReport, PathBuf)>,
}

/// Every source, resolved: (source, image, the store its blobs are in).
type Resolved<'s> = Vec<(&'s str, ResolvedImage, PathBuf)>;

impl Plan {
    /// Resolve every source; blobs shared by images are stored once. Releases come
    /// first: a release image's payload names its components, which are packed with it.
    /// Registry images are resolved together (manifests only, several at a time).
    pub fn resolve(request: &Request, shape: Shape, key_id: &[u8; 8], note: &dyn Fn(Note)) -> Result<Plan> {
        if !shape.force {
            refuse_existing_bundle(&shape.out, &shape.name)?;
        }
        let (sources, release_sources, imageset) = all_sources(request, note)?;
        let operators = imageset.as_ref().is_some_and(|set| !set.operators.is_empty());
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
        let (mut resolved, mut wanted) = resolve_images(&all, registry.as_ref())?;
        if let Some(reg) = &registry {
            add_catalog_images(&packed_catalogs, &all, reg.cache().root(), &mut resolved, &mut wanted)?;
        }
        let catalogs: Vec<Catalog> = packed_catalogs.iter().map(|c| c.record.clone()).collect();
        let subjects = resolved.len();
        let (policy, keys) = attached::settings(request, imageset.as_ref())?;
        let found = match &registry {
            Some(reg) if policy != attached::Policy::Skip => {
                let of: Vec<(&str, &Digest)> = resolved.iter().map(|(s, img, _)| (*s, &img.digest)).collect();
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
        let (mut images, blobs) = images_and_blobs(resolved);
        let warn = |w: &str| note(Note::Warning(w));
        attached::record(&mut images, subjects, &found, policy, &release_sources, &warn)?;
        if let (Some(reg), Some(keys)) = (&registry, &keys) {
            attached::verify_at_pack(reg, &images, &wanted, keys)?;
        }

        let mut items = front_items(request)?;
        let mut releases = releases(&release_sources, payloads, &images)?;
        for path in &request.release_signatures {
            let release = signed_release(path, &mut releases)?;
            let name = format!("{SIGNATURE_PREFIX}{}-{}", &release.digest.hex()[..16], release.signatures.len() + 1);
            let item = file_item(path, &name, "--release-signature")?;
            release.signatures.push(item.path.clone());
            items.push(item);
        }
        items.extend(layout_items(&images));
        items.extend(blobs);

        let id = bundle_id(key_id, &shape, &items, &catalogs);
        let settings = Settings {
            dir: shape.out,
            name: shape.name,
            sequence: shape.sequence.unwrap_or(shape.created),
            created: shape.created,
            // From now: SOURCE_DATE_EPOCH fixes the creation time (reproducible), but a
            // bundle made today from an old commit must not be born expired.
            expires: shape.expires_in.map(|d| crate::time::now().saturating_add(d)),
            volume_size: shape.volume_size,
            chunk_size: shape.chunk_size,
        };
        Ok(Plan { images, items, releases, catalogs, id, settings, registry, wanted })
    }

    /// The bytes of every item.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|i| i.size).sum()
    }

    /// Write and sign the bundle while the registry blobs are fetched.
    pub fn write(self, key: &SecretKey, progress: &dyn Progress, fetch_progress: &dyn Progress) -> Result<Packed> {
        let Plan { images, items, releases, catalogs, id, settings, registry, wanted } = self;
        let total = items.iter().map(|i| i.size).sum();
        let arrivals = Arrivals::new(wanted.iter().map(|(_, b)| b.digest.clone()));
        let (written, fetched) = std::thread::scope(|scope| {
            let fetcher = registry.as_ref().map(|reg| scope.spawn(|| reg.fetch(&wanted, fetch_progress, &arrivals)));
            progress.start("pack", total);
            let written = BundleWriter::new(settings, id, progress)
                .map_err(Error::from)
                .and_then(|writer| write_bundle(writer, &items, (images, releases, catalogs), key, &arrivals));
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
        Ok(Packed { manifest, fetch })
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
    let catalogs = imageset.as_ref().is_some_and(|set| !set.operators.is_empty());
    if sources.is_empty() && release_sources.is_empty() && !catalogs {
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
        let payload = read_release(source, registry).during(|| format!("reading release {source}"))?;
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

/// The bundle's images, and an item for every distinct blob they need.
fn images_and_blobs(resolved: Resolved) -> (Vec<Image>, Vec<Item>) {
    let mut images = Vec::new();
    let mut items = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    for (source, img, root) in resolved {
        for blob in &img.blobs {
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
    (images, items)
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
    (images, releases, catalogs): (Vec<Image>, Vec<Release>, Vec<Catalog>),
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
    Ok(writer.finish(images, releases, catalogs, key)?)
}

/// Included files and release signatures are stored as `files/NAME`; signatures get
/// generated names with this prefix.
const SIGNATURE_PREFIX: &str = "release-signature-";

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
        let wanted: Vec<_> = layers.iter().map(|b| (image.clone(), b.clone())).collect();
        reg.fetch(&wanted, &Silent, &Arrivals::new(layers.iter().map(|b| b.digest.clone())))?;
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
fn bundle_id(key_id: &[u8; 8], shape: &Shape, items: &[Item], catalogs: &[Catalog]) -> String {
    let mut h = Hasher::new();
    h.update(b"airlift bundle id v1\0");
    h.update(key_id);
    h.update(shape.name.as_bytes());
    h.update(&shape.sequence.unwrap_or(shape.created).to_le_bytes());
    h.update(&shape.created.to_le_bytes());
    h.update(&shape.expires_in.map(|d| d + 1).unwrap_or(0).to_le_bytes());
    h.update(&shape.volume_size.to_le_bytes());
    h.update(&shape.chunk_size.to_le_bytes());
    for item in items {
        h.update(item.path.as_bytes());
        h.update(&item.size.to_le_bytes());
        h.update(item.digest.hex().as_bytes());
    }
    // A catalog carried whole holds the same blobs whatever its filter says.
    for catalog in catalogs {
        h.update(catalog.filter.to_string().as_bytes());
    }
    h.finish().hex()[..32].to_string()
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}
