//! `airlift list`: what a bundle holds, from its manifest.

use crate::bundle::manifest::{Channel, EntryKind, Manifest, Volume};
use crate::bundle::{reader, sources};
use crate::cli::ListArgs;
use crate::error::Status;
use crate::output::Output;
use crate::size::human;

pub fn run(args: &ListArgs, out: &Output) -> anyhow::Result<Status> {
    let (manifest, signed) = load(args)?;
    if !signed {
        out.info("note: signature not checked (pass --key PUB to check it)");
    }
    let m = &manifest;
    // Without a key nothing here is verified: every string is shown escaped (JSON is exact).
    let shown = |s: &str| if signed { s.to_string() } else { crate::text::escaped(s) };
    out.data(format!(
        "bundle {} ({}), sequence {}, created {}{}",
        shown(&m.name),
        m.id,
        m.sequence,
        crate::time::rfc3339(m.created),
        m.expires.map(|e| format!(", expires {}", crate::time::rfc3339(e))).unwrap_or_default()
    ));
    out.data("images:");
    for i in &m.images {
        out.data(format!(
            "  {:<40} {}  {:>10}  {}",
            shown(i.reference.as_deref().unwrap_or("-")),
            i.digest,
            human(i.total_size),
            i.platforms.join(",")
        ));
        out.data(format!("    from {}", shown(&i.source.to_string())));
        if let Some(state) = i.signature {
            out.data(format!("    signature: {}", state.name()));
        }
        for a in &i.attached {
            out.data(format!("    attached {:<11} {}", a.kind.name(), a.digest));
        }
    }
    super::catalog::print(out, &m.catalogs);
    super::verify::differential_lines(m).into_iter().for_each(|l| out.data(l));
    if !m.channels.is_empty() {
        out.data("channels:");
        for c in &m.channels {
            channel_lines(c, &shown).into_iter().for_each(|line| out.data(format!("  {line}")));
        }
    }
    volume_lines(m, &shown).into_iter().for_each(|l| out.data(l));
    let files: Vec<_> = m.entries.iter().filter(|e| matches!(e.kind, EntryKind::File | EntryKind::Installer)).collect();
    out.data("files:");
    for f in &files {
        out.data(format!("  {:<40} {:>10}  {}", shown(&f.path), human(f.size), f.digest));
    }
    out.document(&serde_json::json!({
        "status": "ok",
        "exit_code": 0,
        "signature_checked": signed,
        "bundle": { "id": m.id, "name": m.name, "sequence": m.sequence,
                    "created": crate::time::rfc3339(m.created), "expires": m.expires.map(crate::time::rfc3339),
                    "tool": m.tool, "volume_size": m.volume_size, "chunk_size": m.chunk_size },
        "images": m.images.iter().map(|i| serde_json::json!({
            "source": i.source, "reference": i.reference, "digest": i.digest, "media_type": i.media_type,
            "platforms": i.platforms, "size": i.total_size, "blobs": i.blobs.len(),
            "signature": i.signature, "attached": i.attached,
        })).collect::<Vec<_>>(),
        "catalogs": super::catalog::document(&m.catalogs),
        "differential": super::verify::differential_document(m),
        "channels": m.channels,
        "volumes": m.volumes,
        "parity": m.parity,
        "files": files.iter().map(|f| serde_json::json!({
            "path": f.path, "kind": f.kind, "size": f.size, "sha256": f.digest,
        })).collect::<Vec<_>>(),
    }));
    Ok(Status::Ok)
}

/// The data volumes, then the recovery volumes: file, size, sha256.
fn volume_lines(m: &Manifest, shown: &dyn Fn(&str) -> String) -> Vec<String> {
    let line = |v: &Volume| format!("  {}  {:>10}  {}", shown(&v.file), human(v.size), v.sha256.hex());
    let mut lines = vec!["volumes:".to_string()];
    lines.extend(m.volumes.iter().map(line));
    if let Some(p) = &m.parity {
        lines.push(format!(
            "recovery volumes ({}, shards of {}; any {} lost volume(s) can be rebuilt):",
            shown(&p.code),
            human(p.shard_size),
            p.volumes.len()
        ));
        lines.extend(p.volumes.iter().map(line));
    }
    lines
}

/// The bundle's manifest, and whether its signature was checked (with `--key`).
fn load(args: &ListArgs) -> crate::error::Result<(Manifest, bool)> {
    if let Some(k) = &args.key {
        let key = super::load_public_key(k)?;
        return Ok((super::open_bundle(&args.bundle, None, &key)?.manifest, true));
    }
    let dirs = &args.bundle.dirs;
    let name = sources::bundle_name(dirs, args.bundle.name.as_deref())?;
    let dir = sources::holder(dirs, &crate::bundle::names::manifest_file(&name)).unwrap_or(&dirs[0]);
    let (_, bytes) = reader::read_manifest_bytes(dir, &name)?;
    Ok((Manifest::parse(&bytes)?.0, false))
}

/// A release channel as resolved: `channel NAME (TYPE, ARCHES): N version(s): V, …`, then
/// `  graph ARCH: SOURCE DIGEST` per graph document; `shown` escapes what is unverified.
pub fn channel_lines(c: &Channel, shown: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut lines = vec![format!(
        "channel {} ({}, {}): {} version(s): {}",
        shown(&c.name),
        shown(&c.kind),
        shown(&c.architectures.join(",")),
        c.versions.len(),
        shown(&c.versions.join(", "))
    )];
    for g in &c.graphs {
        lines.push(format!("  graph {}: {} {}", shown(&g.architecture), shown(&g.source), g.digest));
    }
    lines
}
