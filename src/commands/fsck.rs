//! `airlift fsck`: check a registry root's storage, optionally restore damaged blobs from
//! a bundle, and report in `verify`'s style (a line per problem, a verdict, one JSON
//! document).

use crate::bundle::reader::{self, Bundle, VolumeStatus};
use crate::cli::FsckArgs;
use crate::error::Status;
use crate::output::Output;
use crate::registry::fsck::{self, Repaired, Report};
use crate::size::human;

pub fn run(args: &FsckArgs, out: &Output) -> anyhow::Result<Status> {
    let jobs = super::threads(args.jobs);
    let progress = out.progress();
    let mut report = fsck::check(&args.root, jobs, progress.as_ref())?;
    let mut repair = None;
    if let (Some(dir), Some(key)) = (&args.repair, &args.key) {
        let bundle = reader::open(dir, args.name.as_deref(), &super::load_public_key(key)?)?;
        if report.problems.iter().any(|p| p.kind.restorable()) {
            let waiting = |pid: Option<u32>| {
                let holder = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                out.info(format!("waiting for an unpack into {}{holder} to finish", args.root.display()));
            };
            let repaired = fsck::repair(&args.root, &bundle, &report, jobs, progress.as_ref(), waiting)?;
            report = fsck::check(&args.root, jobs, progress.as_ref())?;
            repair = Some((bundle, repaired));
        }
    }
    let status = if report.problems.is_empty() { Status::Ok } else { Status::Integrity };
    print(out, args, &report, repair.as_ref(), status);
    out.document(&serde_json::json!({
        "command": "fsck",
        "status": if status == Status::Ok { "ok" } else { "failed" },
        "exit_code": status.code(),
        "root": args.root,
        "blobs": report.blobs,
        "bytes": report.bytes,
        "repositories": report.repositories,
        "manifests": report.manifests,
        "tags": report.tags,
        "links": report.links,
        "absent_children": report.absent_children,
        "problems": report.problems,
        "images": images(&report),
        "repair": repair.as_ref().map(|(bundle, r)| repair_document(bundle, r)),
        "checked_at": crate::time::rfc3339(crate::time::now()),
    }));
    Ok(status)
}

/// Every image hurt, with what hurts it.
fn images(report: &Report) -> Vec<serde_json::Value> {
    report
        .hurt_images()
        .into_iter()
        .map(|(image, problems)| {
            serde_json::json!({
                "reference": image.reference(),
                "repository": image.repository,
                "tag": image.tag,
                "digest": image.digest,
                "status": "damaged",
                "problems": problems.iter().map(|&i| {
                    let p = &report.problems[i];
                    serde_json::json!({ "kind": p.kind, "digest": p.digest, "tag": p.tag })
                }).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn repair_document(bundle: &Bundle, r: &Repaired) -> serde_json::Value {
    serde_json::json!({
        "bundle": { "dir": bundle.dir, "id": bundle.manifest.id, "name": bundle.manifest.name, "key_id": bundle.key_id },
        "restored": r.restored,
        "not_restored": r.not_restored,
        "not_carried": r.not_carried,
        "volumes": r.volumes,
    })
}

/// The human report on stdout: totals, each problem (file, what, images hurt), what a
/// repair did, each image hurt, and the verdict.
fn print(out: &Output, args: &FsckArgs, report: &Report, repair: Option<&(Bundle, Repaired)>, status: Status) {
    out.data(format!(
        "registry root {}: {} blob(s) ({}), {} repositor(y/ies), {} manifest(s), {} tag(s), {} link(s)",
        args.root.display(),
        report.blobs,
        human(report.bytes),
        report.repositories,
        report.manifests,
        report.tags,
        report.links
    ));
    if let Some((bundle, r)) = repair {
        out.data(format!(
            "  repair from bundle {} ({}): {} blob(s) restored",
            bundle.manifest.name,
            bundle.manifest.id,
            r.restored.len()
        ));
        r.restored.iter().for_each(|d| out.data(format!("    restored {d}")));
        r.not_restored
            .iter()
            .for_each(|d| out.data(format!("    NOT restored {d}: its chunks in the bundle are bad or absent")));
        r.not_carried.iter().for_each(|d| out.data(format!("    NOT restored {d}: the bundle does not carry it")));
        for v in r.volumes.iter().filter(|v| v.status != VolumeStatus::Ok) {
            for p in &v.problems {
                out.data(format!("    bundle volume {} at byte {}: {}", v.file, p.offset, p.problem));
            }
        }
    }
    for p in &report.problems {
        out.data(format!("  {:<13} {}", p.kind.word(), p.problem));
        out.data(format!("                file: {}", p.path.display()));
        if !p.hurts.is_empty() {
            let hurts: Vec<String> = p.hurts.iter().map(|i| format!("{} ({})", i.reference(), i.digest)).collect();
            out.data(format!("                hurts: {}", hurts.join(", ")));
        }
    }
    let hurt = report.hurt_images();
    for image in hurt.keys() {
        out.data(format!("  image {} ({}): damaged", image.reference(), image.digest));
    }
    out.data(match status {
        Status::Ok => "OK: every blob matches its digest; every manifest, tag and link is whole".to_string(),
        _ => format!("FAILED: {} problem(s) in the store; {} image(s) hurt", report.problems.len(), hurt.len()),
    });
}
