//! `airlift pack`: resolve sources, then write and sign the bundle.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;

use crate::bundle::manifest::{EntryKind, Image};
use crate::bundle::names;
use crate::bundle::writer::{BundleWriter, Compress, Content, Item, Settings};
use crate::cli::PackArgs;
use crate::client::reference::TRANSPORT;
use crate::client::{ImageRef, Options};
use crate::digest::{Digest, Hasher};
use crate::error::{usage, IoContext, Status};
use crate::oci::layout::{LayoutSource, ResolvedImage, SourceLayout};
use crate::oci::{self, index_json};
use crate::output::Output;
use crate::size::{human, Media};
use crate::source::registry::{default_cache_dir, read_images_file, Platform, RegistrySource};
use crate::store;

pub fn run(args: &PackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_secret_key(&args.key, args.password_file.as_deref())?;
    let created = crate::time::now_or_source_date().map_err(usage)?;
    let volume_size = match (args.volume_size, args.media) {
        (Some(s), _) => s.0,
        (None, Some(m)) => m.volume_size(),
        (None, None) => Media::Fat32.volume_size(),
    };

    // Resolve every source; blobs shared by images are stored once. Registry images are
    // resolved first (manifests only), then their blobs are fetched into the cache.
    let sources = all_sources(args)?;
    let registry = if sources.iter().any(|s| s.starts_with(TRANSPORT)) { Some(registry_source(args)?) } else { None };
    let mut resolved: Vec<(&str, ResolvedImage, PathBuf)> = Vec::new();
    let mut wanted = Vec::new();
    for source in &sources {
        match &registry {
            Some(reg) if source.starts_with(TRANSPORT) => {
                let image = ImageRef::parse(source)?;
                let img = reg.resolve(&image).with_context(|| format!("resolving {source}"))?;
                wanted.extend(img.blobs.iter().map(|b| (image.clone(), b.clone())));
                resolved.push((source, img, reg.cache().root().to_path_buf()));
            }
            _ if source.contains("://") && !source.starts_with(TRANSPORT) => {
                return Err(usage(format!(
                    "unsupported source '{source}': use docker://HOST/REPO[:TAG|@DIGEST], oci:PATH or oci:PATH:REF"
                ))
                .into());
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
    let mut fetch = None;
    if let Some(reg) = &registry {
        let progress = out.progress();
        let report = reg.fetch(&wanted, progress.as_ref()).context("fetching blobs from registries")?;
        out.info(format!(
            "fetched {} blob(s) ({}) from registries, {} already in the cache {}",
            report.fetched,
            human(report.bytes),
            report.cached,
            reg.cache().root().display()
        ));
        fetch = Some(report);
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

    // The installer first (so the first medium carries it), then included files, then
    // the layout's own files, then the blobs.
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
        if !names::valid_file_name(&name) || name == "airlift" {
            return Err(usage(format!(
                "--include {}: file names must be 1-64 letters, digits, '.', '_' or '-' (and not 'airlift')",
                path.display()
            ))
            .into());
        }
        if !included.insert(name.clone()) {
            return Err(
                usage(format!("--include {}: another included file is also named '{name}'", path.display())).into()
            );
        }
        let meta = std::fs::metadata(path).at(path)?;
        if !meta.is_file() {
            return Err(usage(format!("--include {}: not a regular file", path.display())).into());
        }
        front.push(Item {
            path: format!("{}{name}", names::FILES_PREFIX),
            kind: EntryKind::File,
            mode: if is_executable(&meta) { 0o755 } else { 0o644 },
            size: meta.len(),
            digest: crate::digest::file_digest(path)?,
            content: Content::File(path.clone()),
            compress: Compress::IfItPays,
        });
    }
    let layout_marker = br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec();
    let index = index_json(images.iter().map(|i| (&i.digest, i.media_type.as_str(), i.size, i.reference.as_deref())));
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
        sequence: args.sequence,
        created,
        expires: args.expires.map(|d| created + d.0),
        volume_size,
        chunk_size: args.chunk_size.0,
    };
    let progress = out.progress();
    let total: u64 = items.iter().map(|i| i.size).sum();
    progress.start("pack", total);
    let mut writer = BundleWriter::new(settings, id, progress.as_ref())?;
    for item in &items {
        writer.add(item).with_context(|| format!("storing {}", item.path))?;
    }
    let manifest = writer.finish(images, &key)?;
    progress.finish();

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
    let options = Options {
        authfile: r.connect.authfile.clone(),
        cert_dir: r.connect.cert_dir.clone(),
        tls_verify: r.connect.tls_verify,
        ..Options::default()
    };
    Ok(RegistrySource::new(options, &cache, platforms, r.parallel as usize)?)
}

/// The bundle id: a hash of everything that determines the bundle's content, so the same
/// inputs give the same id (and the same bytes) and different bundles differ.
fn bundle_id(key_id: &[u8; 8], args: &PackArgs, created: u64, volume_size: u64, items: &[Item]) -> String {
    let mut h = Hasher::new();
    h.update(b"airlift bundle id v1\0");
    h.update(key_id);
    h.update(args.name.as_bytes());
    h.update(&args.sequence.to_le_bytes());
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
