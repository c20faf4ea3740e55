//! `airlift gc`: garbage collection of a registry root. The work is
//! [`crate::registry::gc`]'s; this parses, calls it and presents.

use std::time::Duration;

use serde_json::json;

use crate::cli::GcArgs;
use crate::error::Status;
use crate::output::Output;
use crate::registry::gc::{self, Options};
use crate::size::human;

pub fn run(args: &GcArgs, out: &Output) -> anyhow::Result<Status> {
    let options = Options { grace: Duration::from_secs(args.grace.0), dry_run: args.dry_run };
    let report = gc::collect(&args.root, &options)?;
    let verb = if report.dry_run { "would remove" } else { "removed" };
    for blob in &report.swept {
        out.data(format!("{verb} {} ({} bytes)", blob.digest, blob.size));
    }
    out.info(format!(
        "{}: {verb} {} blobs, {} ({} bytes); kept {}; {} stale upload sessions removed",
        args.root.display(),
        report.blobs_swept,
        human(report.bytes_freed),
        report.bytes_freed,
        report.blobs_kept,
        report.uploads_purged
    ));
    let mut doc = json!({ "status": "ok", "exit_code": 0 });
    if let (Some(doc), Ok(serde_json::Value::Object(fields))) = (doc.as_object_mut(), serde_json::to_value(&report)) {
        doc.extend(fields);
    }
    out.document(&doc);
    Ok(Status::Ok)
}
