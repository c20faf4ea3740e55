//! `airlift evidence`: merge per-disc `verify --json` reports into one evidence document.

use crate::bundle::evidence::{self, Evidence, VolumeEvidence};
use crate::bundle::reader::VolumeStatus;
use crate::cli::EvidenceArgs;
use crate::error::Status;
use crate::output::Output;
use crate::text::untrusted;

pub fn run(args: &EvidenceArgs, out: &Output) -> anyhow::Result<Status> {
    let evidence = evidence::merge(&args.reports)?;
    let status = evidence.status();
    present(out, &evidence, status);
    let mut doc = serde_json::json!({
        "command": "evidence",
        "status": match status { Status::Ok => "ok", Status::Incomplete => "incomplete", _ => "failed" },
        "exit_code": status.code(),
    });
    if let (Some(doc), serde_json::Value::Object(fields)) = (doc.as_object_mut(), serde_json::json!(evidence)) {
        doc.extend(fields);
    }
    out.document(&doc);
    Ok(status)
}

/// The human report: which bundle, the reports, each volume and where it was seen, the
/// discs seen and when, the verdict. Everything in it came from unsigned reports: escaped.
fn present(out: &Output, e: &Evidence, status: Status) {
    let b = &e.bundle;
    out.data(format!(
        "bundle {} ({}), sequence {}, created {}, manifest {}, signed by key {}",
        untrusted(&b.name),
        untrusted(&b.id),
        b.sequence,
        untrusted(&b.created),
        b.manifest_sha256,
        untrusted(&b.key_id)
    ));
    let report_name = |k: usize| untrusted(&e.reports[k].file.display().to_string());
    for (k, r) in e.reports.iter().enumerate() {
        out.data(format!("  report {}: checked {}", report_name(k), untrusted(&r.checked_at)));
    }
    for v in &e.volumes {
        volume_lines(v, &report_name).into_iter().for_each(|l| out.data(l));
    }
    for d in &e.discs {
        let seen: Vec<String> =
            d.seen.iter().map(|s| format!("{} ({})", untrusted(&s.at), report_name(s.report))).collect();
        out.data(format!("  disc {} seen {}", untrusted(&d.label), seen.join(", ")));
    }
    for p in &e.problems {
        out.data(format!("  problem: {}", untrusted(p)));
    }
    let never: Vec<&str> =
        e.volumes.iter().filter(|v| v.status == VolumeStatus::Missing).map(|v| v.file.as_str()).collect();
    out.data(match status {
        Status::Ok => "OK: every volume was seen intact in at least one report".to_string(),
        Status::Incomplete => format!("INCOMPLETE: everything seen is intact; never seen: {}", never.join(", ")),
        _ => "FAILED: a volume was seen only damaged or foreign, or a report names a problem".to_string(),
    });
}

/// A volume's combined state, then one line per report that saw it.
fn volume_lines(v: &VolumeEvidence, report_name: &dyn Fn(usize) -> String) -> Vec<String> {
    let word = match v.status {
        VolumeStatus::Ok => "ok",
        VolumeStatus::Missing => "missing",
        VolumeStatus::Damaged => "DAMAGED",
        VolumeStatus::Foreign => "FOREIGN",
        VolumeStatus::Skipped => "skipped",
        VolumeStatus::Rebuilt => "rebuilt",
    };
    let mut lines = vec![format!("  {word:<8} {}", untrusted(&v.file))];
    if v.sightings.is_empty() {
        lines.push("           never seen".to_string());
    }
    for s in &v.sightings {
        let disc = s.disc.as_deref().map(|d| format!(" disc {}", untrusted(d))).unwrap_or_default();
        let dir = s.dir.as_ref().map(|d| format!(" in {}", untrusted(&d.display().to_string()))).unwrap_or_default();
        lines.push(format!(
            "           {} at {}{dir}{disc} ({})",
            format!("{:?}", s.status).to_lowercase(),
            untrusted(&s.at),
            report_name(s.report)
        ));
        lines.extend(s.problems.iter().map(|p| format!("             {}", untrusted(p))));
    }
    lines
}
