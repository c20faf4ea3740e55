//! `airlift pack`: resolve sources, then write and sign the bundle, or (`--dry-run`) say
//! what it would be; `--mapping` writes oc-mirror's mapping.txt. The work is
//! [`crate::trip::pack`]'s and [`crate::trip::plan`]'s; this parses, calls them and
//! presents the result.

use std::path::PathBuf;

use crate::bundle::discs::PlannedDisc;
use crate::bundle::images::DiscImage;
use crate::bundle::manifest::{EntryKind, Manifest};
use crate::bundle::names;
use crate::cli::{PackArgs, Signatures};
use crate::error::{usage, Status};
use crate::minisign::SecretKey;
use crate::oci::names::with_transport;
use crate::output::Output;
use crate::size::{human, Media};
use crate::trip::attached::{Keys, Policy};
use crate::trip::delta::Have;
use crate::trip::pack::{DiscShape, Note, Packed, Plan, RegistryOptions, Request, Shape};
use crate::trip::plan::{changes_since, mapping, Changes, PLACEHOLDER_DEST};
use crate::trip::publish::Destination;
use crate::trip::releases::GraphOptions;
use clap::ValueEnum;

pub fn run(args: &PackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = args.key.as_deref().map(|k| super::load_secret_key(k, args.password_file.as_deref())).transpose()?;
    let created = crate::time::now_or_source_date().map_err(usage)?;
    let discs = disc_shape(args)?;
    let volume_size = match (args.volume_size, args.media, discs) {
        (Some(s), _, _) => s.0,
        (None, Some(m), _) => m.volume_size(),
        (None, None, Some(d)) => crate::size::disc_volume_size(d.capacity),
        (None, None, None) => Media::Fat32.volume_size(),
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
        discs,
        parity: args.parity,
    };
    let note = |n: Note| tell(out, n);
    // A dry run without a key: only the bundle id differs from the real pack's.
    let key_id = key.as_ref().map(|k| k.public_key().key_id()).unwrap_or_default();
    let mut request = request(args)?;
    request.have.bundle_keys.extend(key.as_ref().map(|k| k.public_key()));
    let plan = Plan::resolve(&request, shape, &key_id, &note).map_err(super::trip_error)?;
    if let Some(file) = &args.mapping {
        crate::store::write_atomic(file, mapping_text(args, &plan)?.as_bytes())?;
        out.info(format!("mapping of {} image(s) written to {}", plan.images.len(), file.display()));
    }
    // The volume size a disc preset gave is lowered when the discs need the room.
    let volume_size = plan.settings.volume_size;
    match key {
        Some(key) if !args.dry_run => write(args, out, plan, &key, volume_size)?,
        _ => {
            let changes = changes_since(&request.have, &plan.images)?;
            dry_run(args, out, &plan, volume_size, &changes)?
        }
    }
    Ok(Status::Ok)
}

/// The discs `--media` or `--disc-size` name, if any; `--iso` needs one.
fn disc_shape(args: &PackArgs) -> anyhow::Result<Option<DiscShape>> {
    let capacity = args.disc_size.map(|s| s.0).or_else(|| args.media.and_then(Media::capacity));
    let Some(capacity) = capacity else {
        if args.iso {
            return Err(usage("--iso needs a disc: --media dvd|dvd-dl|bd25, or --disc-size BYTES").into());
        }
        return Ok(None);
    };
    Ok(Some(DiscShape {
        capacity,
        per_disc: crate::size::disc_volumes(capacity) as usize,
        fixed_volume_size: args.volume_size.is_some(),
        iso: args.iso,
        keep_volumes: args.keep_volumes,
    }))
}

/// `--mapping`'s lines for the plan's images.
fn mapping_text(args: &PackArgs, plan: &Plan) -> anyhow::Result<String> {
    let dest = args.mapping_dest.as_deref().unwrap_or(PLACEHOLDER_DEST);
    let dest = Destination::parse(dest)
        .map_err(|_| usage(format!("--mapping-dest '{dest}': expected docker://HOST[:PORT][/PREFIX]")))?;
    Ok(mapping(&plan.images, &dest)?)
}

/// Present what a pack of `plan` would write.
fn dry_run(args: &PackArgs, out: &Output, plan: &Plan, volume_size: u64, changes: &[Changes]) -> anyhow::Result<()> {
    let report = plan.dry_run().map_err(super::trip_error)?;
    let k = &report.images;
    let bytes = |n: u64| format!("{} ({n} bytes)", human(n));
    out.info(format!("dry run: nothing is written to {}", args.out.display()));
    out.info(format!(
        "{} image(s): {} release(s), {} release component(s), {} catalog(s), {} operator bundle/related, \
         {} attached, {} graph data, {} additional",
        k.total, k.releases, k.release_components, k.catalogs, k.operators, k.attached, k.graph, k.additional
    ));
    out.info(format!(
        "{} blob(s) carried, {} layer(s) left out: {} before dedupe, {} after, {} after the receipt",
        report.blobs,
        report.omitted,
        bytes(report.bytes_before_dedupe),
        bytes(report.bytes_after_dedupe),
        bytes(report.bytes_after_receipt)
    ));
    let media = args.media.map(|m| (m, report.media(m)));
    out.info(format!(
        "{} volume(s) of at most {}, {} stored{}",
        report.volumes.len(),
        human(volume_size),
        bytes(report.bytes_stored),
        media.map(|(m, n)| format!(", {n} {} medium(s)", media_name(m))).unwrap_or_default()
    ));
    if !report.parity_volumes.is_empty() {
        out.info(format!(
            "{} recovery volume(s) (--parity), {}",
            report.parity_volumes.len(),
            bytes(report.bytes_parity)
        ));
    }
    out.info(format!("to fetch: {} blob(s), {} not in the cache", report.fetch.blobs, bytes(report.fetch.bytes)));
    disc_lines(&report.discs, plan.settings.discs.map(|d| d.capacity), args.iso).into_iter().for_each(|l| out.info(l));
    changes.iter().for_each(|c| tell_changes(out, c));
    out.document(&serde_json::json!({
        "status": "ok",
        "exit_code": 0,
        "dry_run": true,
        "images": report.images,
        "blobs": report.blobs,
        "omitted": report.omitted,
        "bytes_before_dedupe": report.bytes_before_dedupe,
        "bytes_after_dedupe": report.bytes_after_dedupe,
        "bytes_after_receipt": report.bytes_after_receipt,
        "bytes_in": report.bytes_in,
        "bytes_stored": report.bytes_stored,
        "volume_size": volume_size,
        "volumes": report.volumes,
        "parity_volumes": report.parity_volumes,
        "bytes_parity": report.bytes_parity,
        "media": media.map(|(m, n)| serde_json::json!({ "kind": media_name(m), "count": n })),
        "discs": report.discs,
        "iso": args.iso,
        "fetch": report.fetch,
        "mapping": args.mapping,
        "changes": changes,
    }));
    Ok(())
}

/// The discs a dry run plans, one line each, after a line saying how many.
fn disc_lines(discs: &[PlannedDisc], capacity: Option<u64>, iso: bool) -> Vec<String> {
    let Some(capacity) = capacity else { return Vec::new() };
    let mut lines = vec![format!(
        "{} disc(s) of {} ({capacity} bytes){}",
        discs.len(),
        human(capacity),
        if iso { ", one ISO 9660 image each" } else { "" }
    )];
    lines.extend(
        discs.iter().map(|d| format!("  {}: {} (image at most {} bytes)", d.label, d.volumes.join(" "), d.image_bytes)),
    );
    lines
}

/// Changes shown in full; the rest are counted (the JSON document has them all).
const SHOWN_CHANGES: usize = 20;

/// What changed since an earlier bundle or a receipt, on stderr.
fn tell_changes(out: &Output, c: &Changes) {
    let shown = |s: &str| crate::text::untrusted(s);
    out.info(format!(
        "since {}: {} image(s) added, {} removed, {} moved",
        shown(&c.since),
        c.added.len(),
        c.removed.len(),
        c.moved.len()
    ));
    let name = |source: &str, reference: &Option<String>| match reference {
        Some(r) => format!("{} ({})", shown(source), shown(r)),
        None => shown(source),
    };
    let lines = (c.added.iter().map(|n| format!("  added {} {}", name(&n.source, &n.reference), n.digest)))
        .chain(c.removed.iter().map(|n| format!("  removed {} {}", name(&n.source, &n.reference), n.digest)))
        .chain(c.moved.iter().map(|m| format!("  moved {} {} -> {}", name(&m.source, &m.reference), m.from, m.to)));
    let total = c.added.len() + c.removed.len() + c.moved.len();
    lines.take(SHOWN_CHANGES).for_each(|l| out.info(l));
    if total > SHOWN_CHANGES {
        out.info(format!("  … {} more (--json lists them all)", total - SHOWN_CHANGES));
    }
}

/// `--media`'s name for a medium.
fn media_name(media: Media) -> String {
    media.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

/// Write and sign the bundle of `plan`, and present it.
fn write(args: &PackArgs, out: &Output, plan: Plan, key: &SecretKey, volume_size: u64) -> anyhow::Result<()> {
    if !args.no_space_check {
        plan.check_space().map_err(super::trip_error)?;
    }
    let total = plan.total();
    let (progress, fetch_progress) = (out.progress(), out.progress());
    let Packed { manifest, images, fetch } =
        plan.write(key, progress.as_ref(), fetch_progress.as_ref()).map_err(super::trip_error)?;
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
    if let Some(p) = &manifest.parity {
        let names: Vec<&str> = p.volumes.iter().map(|v| v.file.as_str()).collect();
        out.info(format!(
            "{} recovery volume(s) of {} (Reed–Solomon, shards of {}): any {} lost or damaged volume(s) can be \
             rebuilt: {}",
            p.volumes.len(),
            human(p.volumes.first().map_or(0, |v| v.size)),
            human(p.shard_size),
            p.volumes.len(),
            names.join(", ")
        ));
    }
    super::catalog::print(out, &manifest.catalogs);
    super::verify::differential_lines(&manifest).into_iter().for_each(|l| out.info(l));
    image_lines(args, &manifest, &images).into_iter().for_each(|l| out.info(l));
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
        "discs": manifest.discs,
        "disc_images": images,
        "parity": manifest.parity,
        "chunks": manifest.chunks.len(),
        "bytes_in": total,
        "bytes_stored": stored,
        "fetch": fetch.map(|(report, _)| report),
    }));
    Ok(())
}

/// The discs of a written bundle and, with `--iso`, their images, one line each.
fn image_lines(args: &PackArgs, manifest: &Manifest, images: &[DiscImage]) -> Vec<String> {
    let Some(discs) = &manifest.discs else { return Vec::new() };
    let mut lines = vec![format!("{} disc(s) of {} bytes", discs.discs.len(), discs.capacity)];
    if images.is_empty() {
        lines.extend(discs.discs.iter().map(|d| format!("  {}: {}", d.label, d.files.join(" "))));
        return lines;
    }
    lines.extend(
        images.iter().map(|i| {
            format!("  {} ({}): {} ({} bytes), {}", i.file, i.label, human(i.size), i.size, i.volumes.join(" "))
        }),
    );
    if !args.keep_volumes {
        lines.push(format!(
            "the volume files are in the images now (removed from {}; --keep-volumes keeps them)",
            args.out.display()
        ));
    }
    lines
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
