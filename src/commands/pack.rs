//! `airlift pack`: resolve sources, then write and sign the bundle. The work is
//! [`crate::trip::pack`]'s; this parses, calls it and presents the result.

use std::path::PathBuf;

use crate::bundle::manifest::EntryKind;
use crate::bundle::names;
use crate::cli::{PackArgs, Signatures};
use crate::error::{usage, Status};
use crate::oci::names::with_transport;
use crate::output::Output;
use crate::size::{human, Media};
use crate::trip::attached::{Keys, Policy};
use crate::trip::delta::Have;
use crate::trip::pack::{Note, Packed, Plan, RegistryOptions, Request, Shape};
use crate::trip::releases::GraphOptions;

pub fn run(args: &PackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_secret_key(&args.key, args.password_file.as_deref())?;
    let created = crate::time::now_or_source_date().map_err(usage)?;
    let volume_size = match (args.volume_size, args.media) {
        (Some(s), _) => s.0,
        (None, Some(m)) => m.volume_size(),
        (None, None) => Media::Fat32.volume_size(),
    };
    let shape = Shape {
        out: args.out.clone(),
        name: args.name.clone(),
        force: args.force,
        sequence: args.sequence,
        created,
        expires_in: args.expires.map(|d| d.0),
        volume_size,
        chunk_size: args.chunk_size.0,
    };
    let note = |n: Note| tell(out, n);
    let mut request = request(args)?;
    request.have.bundle_keys.push(key.public_key());
    let plan = Plan::resolve(&request, shape, &key.public_key().key_id(), &note).map_err(super::trip_error)?;
    if !args.no_space_check {
        plan.check_space().map_err(super::trip_error)?;
    }
    let total = plan.total();
    let (progress, fetch_progress) = (out.progress(), out.progress());
    let Packed { manifest, fetch } =
        plan.write(&key, progress.as_ref(), fetch_progress.as_ref()).map_err(super::trip_error)?;
    if let Some((report, cache)) = &fetch {
        out.info(format!(
            "fetched {} blob(s) ({}) from registries, {} already in the cache {}",
            report.fetched,
            human(report.bytes),
            report.cached,
            cache.display()
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
    super::catalog::print(out, &manifest.catalogs);
    super::verify::differential_lines(&manifest).into_iter().for_each(|l| out.info(l));
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
        "catalogs": super::catalog::document(&manifest.catalogs),
        "differential": super::verify::differential_document(&manifest),
        "volumes": manifest.volumes,
        "chunks": manifest.chunks.len(),
        "bytes_in": total,
        "bytes_stored": stored,
        "fetch": fetch.map(|(report, _)| report),
    }));
    Ok(Status::Ok)
}

/// What resolving says as it goes, on stderr.
fn tell(out: &Output, note: Note) {
    match note {
        Note::Warning(w) => out.warn(w),
        Note::Release(source, version, n) => out.info(format!("release {version} ({source}): {n} components")),
        Note::CatalogImage(source, digest, size) => out
            .info(format!("operator catalog {source}: {digest}, {} to fetch (if not cached) and filter", human(size))),
        Note::ReleaseSignature(release, url, Some(key)) => {
            out.info(format!("release {release}: signature {url} verified with {}", key.display()))
        }
        Note::ReleaseSignature(release, url, None) => {
            out.warn(format!("release {release}: signature {url} travels unverified (no --release-key)"))
        }
        Note::Catalog(source, n) if n.is_warning() => out.warn(format!("{source}: {n}")),
        Note::Catalog(source, n) => out.info(format!("{source}: {n}")),
        Note::Channel(c) => super::list::channel_lines(c, &|s| s.to_string()).into_iter().for_each(|l| out.info(l)),
    }
}

/// What the arguments ask to pack.
fn request(args: &PackArgs) -> anyhow::Result<Request> {
    let r = &args.registry;
    let s = &args.sigstore;
    Ok(Request {
        sources: args.sources.clone(),
        image_files: args.images.clone(),
        releases: args.release.iter().map(|r| with_transport(r)).collect(),
        config: args.config.clone(),
        include: args.include.clone(),
        release_signatures: args.release_signature.clone(),
        release_signature_url: args.release_signature_url.clone(),
        release_keys: args.release_key.clone(),
        installer: !args.no_installer,
        graph: GraphOptions { url: args.graph_url.clone(), file: args.graph_file.clone() },
        graph_data: args.graph_data.clone(),
        signatures: args.signatures.map(|s| match s {
            Signatures::Require => Policy::Require,
            Signatures::Optional => Policy::Optional,
            Signatures::Skip => Policy::Skip,
        }),
        sigstore: Keys::load(&s.sigstore_key, s.rekor_key.as_deref())?,
        have: have(args)?,
        registry: RegistryOptions {
            client: super::client_options(&r.connect),
            cache: r.cache.clone(),
            parallel: r.parallel as usize,
            platforms: r.platform.clone(),
        },
    })
}

/// What the destination holds, as the arguments say (`--have`, `--have-key`, `--since`);
/// the pack key is added to the keys earlier bundles may be signed by.
fn have(args: &PackArgs) -> crate::error::Result<Have> {
    let keys = args.have_key.iter().map(|k| super::load_public_key(k)).collect::<crate::error::Result<Vec<_>>>()?;
    Ok(Have { receipts: args.have.clone(), receipt_keys: keys.clone(), since: args.since.clone(), bundle_keys: keys })
}
