//! `airlift pack`: resolve sources, then write and sign the bundle.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bundle::manifest::{EntryKind, Image, Manifest, Release};
use crate::bundle::names;
use crate::bundle::writer::{BundleWriter, Compress, Content, Item, Settings};
use crate::cli::PackArgs;
use crate::client::reference::TRANSPORT;
use crate::client::ImageRef;
use crate::digest::{Digest, Hasher};
use crate::error::{usage, IoContext, Status};
use crate::minisign::SecretKey;
use crate::oci::layout::{LayoutSource, ResolvedImage, SourceLayout};
use crate::oci::{self, index_json};
use crate::openshift::imageset;
use crate::openshift::release::{self, Payload};
use crate::output::Output;
use crate::progress::Silent;
use crate::size::{human, Media};
use crate::source::registry::{default_cache_dir, read_images_file, Arrival, Arrivals, Platform, RegistrySource};
use crate::store;

pub fn run(args: &PackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_secret_key(&args.key, args.password_file.as_deref())?;
    let created = crate::time::now_or_source_date().map_err(usage)?;
    if !args.force {
        refuse_existing_bundle(&args.out, &args.name)?;
    }
    let volume_size = match (args.volume_size, args.media) {
        (Some(s), _) => s.0,
        (None, Some(m)) => m.volume_size(),
        (None, None) => Media::Fat32.volume_size(),
    };

    // Resolve every source; blobs shared by images are stored once. Releases come first:
    // a release image's payload names its components, which are packed with it.
    // Registry images are resolved together (manifests only, several at a time); their
    // blobs are fetched into the cache while the bundle is written, each stored as soon
    // as it is there.
    let mut sources = all_sources(args)?;
    let mut release_sources: Vec<String> = args.release.iter().map(|r| with_transport(r)).collect();
    let imageset = args.config.as_deref().map(imageset::load).transpose()?;
    if let Some(set) = &imageset {
        for w in &set.warnings {
            out.warn(w);
        }
        release_sources.extend(set.releases.iter().cloned());
        sources.extend(set.additional.iter().cloned());
    }
    dedup(&mut release_sources);
    if sources.is_empty() && release_sources.is_empty() {
        return Err(usage("nothing to pack: give SOURCE, --images, --release or --config").into());
    }
    if let Some(bad) = sources.iter().chain(&release_sources).find(|s| s.contains("://") && !s.starts_with(TRANSPORT)) {
        return Err(usage(format!(
            "unsupported source '{bad}': use docker://HOST/REPO[:TAG|@DIGEST], oci:PATH or oci:PATH:REF"
        ))
        .into());
    }
    let registry = if !release_sources.is_empty() || sources.iter().any(|s| s.starts_with(TRANSPORT)) {
        Some(registry_source(args)?)
    } else {
        None
    };
    let mut payloads = Vec::new();
    for source in &release_sources {
        let payload = read_release(source, registry.as_ref()).with_context(|| format!("reading release {source}"))?;
        if let Some(set) = &imageset {
            if let Some(c) = payload.components.iter().find(|c| set.is_blocked(&c.image)) {
                return Err(usage(format!(
                    "{}: blockedImages blocks {} ({}), a component of release {}: a release is mirrored whole",
                    args.config.as_deref().unwrap_or(Path::new("")).display(),
                    c.name,
                    c.image,
                    payload.version
                ))
                .into());
            }
        }
        out.info(format!("release {} ({source}): {} components", payload.version, payload.components.len()));
        payloads.push(payload);
    }
    let mut all = release_sources.clone();
    all.extend(payloads.iter().flat_map(|p| p.components.iter().map(|c| format!("{TRANSPORT}{}", c.image))));
    all.append(&mut sources);
    dedup(&mut all);
    let sources = all;
    let registry_refs: Vec<ImageRef> = sources
        .iter()
        .filter(|s| s.starts_with(TRANSPORT))
        .map(|s| ImageRef::parse(s))
        .collect::<crate::error::Result<_>>()?;
    let mut from_registry = match &registry {
        Some(reg) => registry_refs.iter().cloned().zip(reg.resolve_all(&registry_refs)?).collect(),
        None => Vec::new(),
    }
    .into_iter();
    let mut resolved: Vec<(&str, ResolvedImage, PathBuf)> = Vec::new();
    let mut wanted = Vec::new();
    for source in &sources {
        match (&registry, source.starts_with(TRANSPORT)) {
            (Some(reg), true) => {
                let (image, img) =
                    from_registry.next().ok_or_else(|| usage(format!("internal: {source} was not resolved")))?;
                wanted.extend(img.blobs.iter().map(|b| (image.clone(), b.clone())));
                resolved.push((source, img, reg.cache().root().to_path_buf()));
            }
            _ => {
                let parsed = LayoutSource::parse(source)?;
                let layout = SourceLayout::open(&parsed.path)?;
                for img in layout.images(parsed.reference.as_deref()).with_context(|| format!("resolving {source}"))? {
                    resolved.push((source, img, layout.root().to_path_buf()));
                }
            }
        }
    }

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
        });
    }

    // The installer first (so the first medium carries it), then included files and
    // release signatures, then the layout's own files, then the blobs.
    let mut front = Vec::new();
    if !args.no_installer {
        let exe = std::env::current_exe().context("finding the airlift executable to carry as installer")?;
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
    for path in &args.include {
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
    let mut releases = Vec::new();
    for (source, payload) in release_sources.iter().zip(payloads) {
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
    for path in &args.release_signature {
        let release = signed_release(path, &mut releases)?;
        let name = format!("{SIGNATURE_PREFIX}{}-{}", &release.digest.hex()[..16], release.signatures.len() + 1);
        let item = file_item(path, &name, "--release-signature")?;
        release.signatures.push(item.path.clone());
        front.push(item);
    }
    let layout_marker = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let index = index_json(&images.iter().map(crate::trip::index_entry).collect::<Vec<_>>());
    for (path, bytes) in [(names::OCI_LAYOUT, layout_marker), (names::INDEX_JSON, index)] {
        front.push(Item {
            path: path.into(),
            kind: EntryKind::Layout,
            mode: 0o644,
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
            content: Content::Bytes(bytes),
            compress: Compress::IfItPays,
        });
    }
    front.extend(items);
    let items = front;

    let id = bundle_id(&key.public_key().key_id(), args, created, volume_size, &items);
    let settings = Settings {
        dir: args.out.clone(),
        name: args.name.clone(),
        sequence: sequence(args, created),
        created,
        // From now: SOURCE_DATE_EPOCH fixes the creation time (reproducible), but a
        // bundle made today from an old commit must not be born expired.
        expires: args.expires.map(|d| crate::time::now().saturating_add(d.0)),
        volume_size,
        chunk_size: args.chunk_size.0,
    };
    let progress = out.progress();
    let total: u64 = items.iter().map(|i| i.size).sum();
    let arrivals = Arrivals::new(wanted.iter().map(|(_, b)| b.digest.clone()));
    let fetch_progress = out.progress();
    let (written, fetched) = std::thread::scope(|scope| {
        let fetcher =
            registry.as_ref().map(|reg| scope.spawn(|| reg.fetch(&wanted, fetch_progress.as_ref(), &arrivals)));
        progress.start("pack", total);
        let written = BundleWriter::new(settings, id, progress.as_ref())
            .map_err(anyhow::Error::from)
            .and_then(|writer| write_bundle(writer, &items, images, releases, &key, &arrivals));
        if written.is_err() {
            arrivals.cancel();
        }
        let fetched = fetcher.map(|f| f.join().unwrap_or_else(|_| Err(usage("internal: the fetch thread panicked"))));
        (written, fetched)
    });
    progress.finish();
    // The writer's own failure comes first (the fetch was stopped because of it); a blob
    // the fetch could not get stops the writer, and then the fetch's error says why.
    let writer_failed = written.as_ref().is_err_and(|e| e.downcast_ref::<Unfetched>().is_none());
    let fetch = match fetched {
        Some(Err(e)) if !writer_failed => return Err(anyhow::Error::from(e).context("fetching blobs from registries")),
        Some(Ok(report)) => Some(report),
        _ => None,
    };
    let manifest = written?;
    if let (Some(reg), Some(report)) = (&registry, &fetch) {
        out.info(format!(
            "fetched {} blob(s) ({}) from registries, {} already in the cache {}",
            report.fetched,
            human(report.bytes),
            report.cached,
            reg.cache().root().display()
        ));
    }

    let stored: u64 = manifest.volumes.iter().map(|v| v.size).sum();
    let manifest_path: PathBuf = args.out.join(names::manifest_file(&manifest.name));
    out.info(format!(
        "packed {} image(s), {} blob(s), {} into {} volume(s) of at most {} ({} stored)",
        manifest.images.len(),
        manifest.entries.iter().filter(|e| e.kind == EntryKind::Blob).count(),
        human(total),
        manifest.volumes.len(),
        human(volume_size),
        human(stored)
    ));
    out.data(format!("bundle {} ({}) written to {}", manifest.name, manifest.id, manifest_path.display()));
    out.document(&serde_json::json!({
        "status": "ok",
        "exit_code": 0,
        "bundle": {
            "id": manifest.id,
            "name": manifest.name,
            "sequence": manifest.sequence,
            "created": crate::time::rfc3339(manifest.created),
            "expires": manifest.expires.map(crate::time::rfc3339),
        },
        "manifest": manifest_path,
        "key_id": key.public_key().key_id_hex(),
        "images": manifest.images.iter().map(|i| serde_json::json!({
            "source": i.source, "reference": i.reference, "digest": i.digest, "size": i.total_size,
        })).collect::<Vec<_>>(),
        "volumes": manifest.volumes,
        "chunks": manifest.chunks.len(),
        "bytes_in": total,
        "bytes_stored": stored,
        "fetch": fetch,
    }));
    Ok(Status::Ok)
}

/// Refuse (exit 2) when `out` already holds a bundle called `name` (its manifest or the
/// manifest's signature: pack writes them last, so volumes alone are what a killed pack
/// left, and a rerun goes on over them): writing would replace its files and delete the
/// volumes the new bundle does not have. The refusal names every `NAME.*` file there.
/// `--force` allows it.
fn refuse_existing_bundle(out: &std::path::Path, name: &str) -> crate::error::Result<()> {
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

/// A blob the writer waited for that the fetch ended without.
#[derive(Debug)]
struct Unfetched(Digest);

impl std::fmt::Display for Unfetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blob {} was not fetched", self.0)
    }
}

impl std::error::Error for Unfetched {}

/// Write and sign the bundle, storing each registry blob as soon as the fetch has put it
/// in the cache.
fn write_bundle(
    mut writer: BundleWriter,
    items: &[Item],
    images: Vec<Image>,
    releases: Vec<Release>,
    key: &SecretKey,
    arrivals: &Arrivals,
) -> anyhow::Result<Manifest> {
    for item in items {
        let stored = match arrivals.wait(&item.digest) {
            Arrival::Missing => return Err(Unfetched(item.digest.clone()).into()),
            Arrival::Fetched => writer.add_checked(item),
            Arrival::Present => writer.add(item),
        };
        stored.with_context(|| format!("storing {}", item.path))?;
    }
    Ok(writer.finish(images, releases, key)?)
}

/// Included files and release signatures are stored as `files/NAME`; signatures get
/// generated names with this prefix.
const SIGNATURE_PREFIX: &str = "release-signature-";

/// An included file (`files/NAME`).
fn file_item(path: &Path, name: &str, option: &str) -> anyhow::Result<Item> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_file() {
        return Err(usage(format!("{option} {}: not a regular file", path.display())).into());
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
fn signed_release<'r>(path: &Path, releases: &'r mut [Release]) -> anyhow::Result<&'r mut Release> {
    let dir = path.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned());
    if let Some(hex) = dir.as_deref().and_then(|d| d.strip_prefix("sha256=")) {
        return releases.iter_mut().find(|r| r.digest.hex() == hex).ok_or_else(|| {
            usage(format!("--release-signature {}: no release packed has digest sha256:{hex}", path.display())).into()
        });
    }
    match releases {
        [only] => Ok(only),
        [] => Err(usage(format!("--release-signature {}: no release is packed (--release)", path.display())).into()),
        _ => Err(usage(format!(
            "--release-signature {}: several releases are packed; put the file in a directory named \
             sha256=HEX after the release it signs",
            path.display()
        ))
        .into()),
    }
}

/// A release image's payload, read from its layers (fetched into the cache first when
/// it comes from a registry).
fn read_release(source: &str, registry: Option<&RegistrySource>) -> anyhow::Result<Payload> {
    if source.starts_with(TRANSPORT) {
        let reg = registry.ok_or_else(|| usage("internal: no registry client"))?;
        let image = ImageRef::parse(source)?;
        let resolved = reg.resolve(&image)?;
        let layers: Vec<_> = resolved.blobs.iter().filter(|b| oci::is_layer(&b.media_type)).cloned().collect();
        let wanted: Vec<_> = layers.iter().map(|b| (image.clone(), b.clone())).collect();
        reg.fetch(&wanted, &Silent, &Arrivals::new(layers.iter().map(|b| b.digest.clone())))?;
        let paths: Vec<PathBuf> = layers.iter().map(|b| reg.cache().path(&b.digest)).collect();
        return Ok(release::read_payload(source, &paths)?);
    }
    let parsed = LayoutSource::parse(source)?;
    let layout = SourceLayout::open(&parsed.path)?;
    let images = layout.images(parsed.reference.as_deref())?;
    let [image] = &images[..] else {
        return Err(usage(format!("{source}: a release is one image; name it (oci:DIR:REF)")).into());
    };
    let paths: Vec<PathBuf> =
        image.blobs.iter().filter(|b| oci::is_layer(&b.media_type)).map(|b| layout.blob_path(&b.digest)).collect();
    Ok(release::read_payload(source, &paths)?)
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

/// `docker://` in front of a reference without a transport.
fn with_transport(reference: &str) -> String {
    if reference.starts_with(TRANSPORT) || reference.starts_with("oci:") {
        reference.to_string()
    } else {
        format!("{TRANSPORT}{reference}")
    }
}

/// Drop repeated entries, keeping the first of each.
fn dedup(list: &mut Vec<String>) {
    let mut seen = HashSet::new();
    list.retain(|s| seen.insert(s.clone()));
}

/// The sources given as arguments, then those of every `--images` file.
fn all_sources(args: &PackArgs) -> anyhow::Result<Vec<String>> {
    let mut sources = args.sources.clone();
    for file in &args.images {
        let listed = read_images_file(file)?;
        if listed.is_empty() {
            return Err(usage(format!("--images {}: lists no image", file.display())).into());
        }
        sources.extend(listed);
    }
    Ok(sources)
}

fn registry_source(args: &PackArgs) -> anyhow::Result<RegistrySource> {
    let r = &args.registry;
    let platforms = r.platform.iter().map(|p| Platform::parse(p)).collect::<crate::error::Result<Vec<_>>>()?;
    let cache = match &r.cache {
        Some(c) => c.clone(),
        None => default_cache_dir()?,
    };
    Ok(RegistrySource::new(super::client_options(&r.connect), &cache, platforms, r.parallel as usize)?)
}

/// The bundle's sequence: `--sequence`, else its signed creation time in seconds (it
/// grows by itself and stays reproducible under SOURCE_DATE_EPOCH).
fn sequence(args: &PackArgs, created: u64) -> u64 {
    args.sequence.unwrap_or(created)
}

/// The bundle id: a hash of everything that determines the bundle's content, so the same
/// inputs give the same id (and the same bytes) and different bundles differ.
fn bundle_id(key_id: &[u8; 8], args: &PackArgs, created: u64, volume_size: u64, items: &[Item]) -> String {
    let mut h = Hasher::new();
    h.update(b"airlift bundle id v1\0");
    h.update(key_id);
    h.update(args.name.as_bytes());
    h.update(&sequence(args, created).to_le_bytes());
    h.update(&created.to_le_bytes());
    h.update(&args.expires.map(|d| d.0 + 1).unwrap_or(0).to_le_bytes());
    h.update(&volume_size.to_le_bytes());
    h.update(&args.chunk_size.0.to_le_bytes());
    for item in items {
        h.update(item.path.as_bytes());
        h.update(&item.size.to_le_bytes());
        h.update(item.digest.hex().as_bytes());
    }
    h.finish().hex()[..32].to_string()
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}
