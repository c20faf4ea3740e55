//! `airlift verify`: read-only check of the signature, then of every volume present.

use crate::bundle::check::Checker;
use crate::bundle::feed::{self, Fed};
use crate::bundle::ids::VolumeId;
use crate::bundle::manifest::Manifest;
use crate::bundle::parity;
use crate::bundle::reader::{self, Bundle, VolumeKind, VolumeReport, VolumeStatus};
use crate::cli::VerifyArgs;
use crate::error::Status;
use crate::output::Output;
use crate::size::human;
use crate::trip::attached::{self, Keys};

pub fn run(args: &VerifyArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_public_key(&args.key)?;
    let tell = |s: &str| out.prompt(s);
    let watch = super::watch(&args.media, &tell);
    let bundle = super::open_bundle(&args.bundle, watch.as_ref(), &key)?;
    let progress = out.progress();
    let checker = Checker::new(&bundle, args.deep);
    let mut read = |v: VolumeId| {
        progress.start(&format!("volume {v}"), bundle.volume_payload(v));
        let report = bundle.read_volume(v, &checker, super::jobs(&args.read), progress.as_ref());
        progress.finish();
        report
    };
    let mut fed = feed::feed(&bundle, watch.as_ref(), &|_| true, &mut read)?;
    // Recovery volumes are checked whole: the census says whether they can rebuild what is lost.
    let data = bundle.manifest.volumes.len();
    let recovery: Vec<usize> = (data..bundle.manifest.all_volumes().count()).collect();
    fed.reports.extend(parity::check_volumes(&bundle, &recovery, super::jobs(&args.read), progress.as_ref()));
    let mut general = bundle.elsewhere.clone();
    if let Err(e) = bundle.check_expiry(crate::time::now()) {
        general.push(e.to_string());
    }
    if let reader::SumsState::Bad(why) = &bundle.sums {
        general.push(why.clone());
    }
    let unlisted = bundle.unlisted_volumes();
    for f in &unlisted {
        general.push(format!("{f} looks like a volume of this bundle but is not in its manifest (foreign)"));
    }
    let keys = Keys::load(&args.sigstore.sigstore_key, args.sigstore.rekor_key.as_deref())?;
    let signatures = attached::evidence(&bundle, keys.as_ref());
    for s in signatures.iter().filter(|s| s.state == "bad") {
        general.push(format!("{}: its cosign signature is bad: {}", s.source, s.detail.as_deref().unwrap_or("")));
    }
    let status = summarize(&fed.reports, &general);
    let mut doc = print_report(out, &bundle, &fed, &general, &unlisted, status, "verify");
    doc["image_signatures"] = serde_json::json!(signatures);
    out.document(&doc);
    Ok(status)
}

/// The exit status for a set of volume reports plus bundle-level problems.
pub fn summarize(reports: &[VolumeReport], general: &[String]) -> Status {
    let mut status = if general.is_empty() { Status::Ok } else { Status::Integrity };
    for r in reports {
        status = status.worst(match r.status {
            VolumeStatus::Ok | VolumeStatus::Skipped | VolumeStatus::Rebuilt => Status::Ok,
            VolumeStatus::Missing => Status::Incomplete,
            VolumeStatus::Damaged | VolumeStatus::Foreign => Status::Integrity,
        });
    }
    status
}

/// The human report (stdout), and the JSON document for the caller to complete and print;
/// shared by verify and unpack.
pub fn print_report(
    out: &Output,
    bundle: &Bundle,
    fed: &Fed,
    general: &[String],
    unlisted: &[String],
    status: Status,
    command: &str,
) -> serde_json::Value {
    let (m, reports) = (&bundle.manifest, &fed.reports);
    out.data(format!(
        "bundle {} ({}), sequence {}, created {}, signed by key {}",
        m.name,
        m.id,
        m.sequence,
        crate::time::rfc3339(m.created),
        bundle.key_id
    ));
    super::catalog::print(out, &m.catalogs);
    differential_lines(m).into_iter().for_each(|l| out.data(l));
    print_volumes(out, reports, bundle.dirs.len() > 1 || m.discs.is_some());
    for g in general {
        out.data(format!("  problem: {g}"));
    }
    let images = bundle.image_states(reports);
    for i in &images {
        if i.status != "ok" {
            let name = i.reference.clone().unwrap_or_else(|| i.digest.to_string());
            let mut line = format!("  image {name}: {}", i.status);
            if !i.missing_volumes.is_empty() {
                line.push_str(&format!(" (needs {})", i.missing_volumes.join(", ")));
            }
            out.data(line);
        }
    }
    let census = parity::census(m, reports);
    if let Some(c) = &census {
        out.data(format!("  {}", c.line()));
    }
    let missing: Vec<&str> =
        reports.iter().filter(|r| r.status == VolumeStatus::Missing).map(|r| r.file.as_str()).collect();
    out.data(verdict(reports, &missing, status));
    serde_json::json!({
        "command": command,
        "status": match status { Status::Ok => "ok", Status::Incomplete => "incomplete", Status::Integrity => "failed", Status::Usage => "error" },
        "exit_code": status.code(),
        "bundle": {
            "dir": bundle.dir,
            "dirs": bundle.dirs,
            "id": m.id,
            "name": m.name,
            "sequence": m.sequence,
            "created": crate::time::rfc3339(m.created),
            "expires": m.expires.map(crate::time::rfc3339),
            "tool": m.tool,
            "manifest_sha256": bundle.manifest_sha256,
        },
        "signature": { "key_id": bundle.key_id, "trusted_comment": bundle.trusted_comment, "valid": true },
        "sha256sums": bundle.sums,
        "volumes": reports,
        "parity": census,
        "missing": missing,
        "foreign": unlisted,
        "wrong_discs": fed.wrong_discs,
        "problems": general,
        "images": images,
        "catalogs": super::catalog::document(&m.catalogs),
        "differential": differential_document(m),
        "checked_at": crate::time::rfc3339(crate::time::now()),
    })
}

/// A differential bundle, in words: what it relies on the destination holding, and from
/// which receipts or earlier bundles (nothing for a full bundle).
pub fn differential_lines(m: &Manifest) -> Vec<String> {
    if m.omitted.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "  differential: relies on {} blob(s) ({}) the destination must already hold, from:",
        m.omitted.len(),
        human(m.omitted_bytes())
    )];
    for (base, count, bytes) in m.reliance() {
        lines.push(format!("    {}: {count} blob(s), {}", base.describe(), human(bytes)));
    }
    lines
}

/// [`differential_lines`] as JSON: `null` for a full bundle.
pub fn differential_document(m: &Manifest) -> serde_json::Value {
    if m.omitted.is_empty() {
        return serde_json::Value::Null;
    }
    let bases: Vec<_> = m
        .reliance()
        .into_iter()
        .map(|(b, count, bytes)| {
            serde_json::json!({
                "kind": b.kind, "id": b.id, "name": b.name, "created": crate::time::rfc3339(b.created),
                "blobs": count, "bytes": bytes,
            })
        })
        .collect();
    serde_json::json!({
        "blobs": m.omitted.len(),
        "bytes": m.omitted_bytes(),
        "bases": bases,
    })
}

/// One line per volume (its state and file, whether it is a recovery volume; with `whence`,
/// where it was found and on which disc), then each problem found in it: where, which chunk,
/// which images it hurts.
pub fn print_volumes(out: &Output, reports: &[VolumeReport], whence: bool) {
    for r in reports {
        let word = match r.status {
            VolumeStatus::Ok => "ok",
            VolumeStatus::Skipped => "skipped (not needed)",
            VolumeStatus::Damaged => "DAMAGED",
            VolumeStatus::Missing => "missing",
            VolumeStatus::Foreign => "FOREIGN",
            VolumeStatus::Rebuilt => "rebuilt",
        };
        let kind = if r.kind == VolumeKind::Recovery { " (recovery)" } else { "" };
        let place = match (&r.seen, whence) {
            (Some(seen), true) => match &seen.disc {
                Some(disc) => format!("  (disc {disc}, {})", seen.dir.display()),
                None => format!("  ({})", seen.dir.display()),
            },
            _ => String::new(),
        };
        out.data(format!("  {word:<8} {}{kind}{place}", r.file));
        for p in &r.problems {
            let mut line = format!("           at byte {}: {}", p.offset, p.problem);
            if let Some(c) = p.chunk {
                line.push_str(&format!(" [chunk {c}]"));
            }
            out.data(line);
            if !p.hurts.is_empty() {
                out.data(format!("           hurts: {}", p.hurts.join(", ")));
            }
        }
    }
}

/// The last line of the report: OK, INCOMPLETE (naming the `missing` volumes) or FAILED.
fn verdict(reports: &[VolumeReport], missing: &[&str], status: Status) -> String {
    let skipped = reports.iter().filter(|r| r.status == VolumeStatus::Skipped).count();
    match status {
        Status::Ok if skipped == reports.len() => format!(
            "OK: no volume needed reading ({skipped} skipped (not needed)): what they hold was already complete"
        ),
        Status::Ok if skipped > 0 => format!(
            "OK: every chunk read matches the signed manifest ({} volume(s) read now; {skipped} skipped (not \
             needed): what they hold was already complete)",
            reports.len() - skipped
        ),
        Status::Ok => "OK: every volume and chunk matches the signed manifest".to_string(),
        Status::Incomplete => format!("INCOMPLETE: everything present is good; still missing: {}", missing.join(", ")),
        _ => "FAILED: the bundle is damaged or tampered with".to_string(),
    }
}
