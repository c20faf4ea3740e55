//! `airlift repair`: rebuild the lost or damaged volumes of a bundle with parity. The work
//! is [`crate::bundle::repair`]'s; this parses, calls it and presents the result.

use crate::bundle::repair::{self, Repaired};
use crate::cli::RepairArgs;
use crate::error::Status;
use crate::output::Output;

pub fn run(args: &RepairArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_public_key(&args.key)?;
    let bundle = super::open_bundle(&args.bundle, None, &key)?;
    let progress = out.progress();
    let into = args.out.as_deref().unwrap_or(&bundle.dir).display().to_string();
    let waiting = || out.info(format!("waiting for another repair writing into {into}"));
    let done = repair::repair(&bundle, args.out.as_deref(), super::jobs(&args.read), progress.as_ref(), &waiting)?;
    let m = &bundle.manifest;
    out.data(format!("bundle {} ({}), sequence {}, signed by key {}", m.name, m.id, m.sequence, bundle.key_id));
    super::verify::print_volumes(out, &done.reports, false);
    out.data(format!("  {}", done.census.line()));
    let status = if done.census.recoverable { Status::Ok } else { Status::Integrity };
    out.data(verdict(&done));
    if !done.copied.is_empty() {
        out.info(format!(
            "{} holds the rebuilt volumes and the signed files: together with the intact volumes of {} they make \
             the bundle (verify both: airlift verify {} {} --key …, or copy them into one directory or onto the media)",
            done.into.display(),
            bundle.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" "),
            bundle.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" "),
            done.into.display()
        ));
    }
    out.document(&serde_json::json!({
        "command": "repair",
        "status": if status == Status::Ok { "ok" } else { "failed" },
        "exit_code": status.code(),
        "bundle": { "dir": bundle.dir, "id": m.id, "name": m.name, "sequence": m.sequence },
        "signature": { "key_id": bundle.key_id, "valid": true },
        "volumes": done.reports,
        "parity": done.census,
        "into": done.into,
        "rebuilt": done.rebuilt,
        "copied": done.copied,
    }));
    Ok(status)
}

/// The last line: what was rebuilt, or why nothing was.
fn verdict(done: &Repaired) -> String {
    let c = &done.census;
    if c.lost.is_empty() {
        return "OK: every volume matches the signed manifest: nothing to repair".into();
    }
    if !c.recoverable {
        return format!(
            "NOT REPAIRED: {} volume(s) lost or damaged ({}), more than the {} intact recovery volume(s) can \
             rebuild; nothing was written",
            c.lost.len(),
            c.lost.join(", "),
            c.recovery_intact
        );
    }
    format!(
        "REPAIRED: {} volume(s) rebuilt into {}, each matching its signed sha256: {}",
        done.rebuilt.len(),
        done.into.display(),
        c.lost.join(", ")
    )
}
