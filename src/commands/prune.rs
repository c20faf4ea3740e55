//! `airlift prune`: delete images from a registry root (or a registry over the network) by
//! an oc-mirror delete file or by release retention. The work is [`crate::trip::prune`]'s; this parses, calls it and
//! presents.

use serde_json::json;

use crate::cli::PruneArgs;
use crate::client::Client;
use crate::error::{usage, Status};
use crate::openshift::deleteset;
use crate::output::Output;
use crate::size::human;
use crate::text::escaped;
use crate::trip::prune::{prune, Place, Report, Selection};
use crate::trip::publish::Destination;

pub fn run(args: &PruneArgs, out: &Output) -> anyhow::Result<Status> {
    let selection = match (&args.config, args.keep_releases) {
        (Some(file), _) => Selection::Set(deleteset::load(file)?),
        (None, Some(n)) if n > 0 => Selection::KeepReleases(n),
        (None, Some(_)) => return Err(usage("--keep-releases 0 would delete every release; keep at least 1").into()),
        (None, None) => return Err(usage("give --config DELETE.yaml or --keep-releases N").into()),
    };
    let report = match (&args.root, &args.to) {
        (Some(root), _) => prune(&Place::Root { root, prefix: args.prefix.as_deref() }, &selection, args.dry_run)?,
        (None, Some(to)) => {
            let client = Client::new(super::client_options(&args.connect))?;
            prune(&Place::Registry { client: &client, to: &Destination::parse(to)? }, &selection, args.dry_run)?
        }
        (None, None) => return Err(usage("give --root ROOT or --to docker://HOST/PREFIX").into()),
    };
    present(out, &report);
    Ok(Status::Ok)
}

/// What went (or would go), what stayed and why; names from the root are escaped.
fn present(out: &Output, r: &Report) {
    for w in &r.warnings {
        out.warn(escaped(w));
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for g in &r.deleted {
        let tags = if g.tags.is_empty() { String::new() } else { format!(" (tags {})", escaped(&g.tags.join(", "))) };
        out.data(format!("{verb} {}@{}{tags}: {}", escaped(&g.repository), g.digest, escaped(&g.why)));
    }
    for k in &r.kept {
        let tags = if k.tags_removed.is_empty() {
            String::new()
        } else {
            format!("; its tags {} go", escaped(&k.tags_removed.join(", ")))
        };
        out.data(format!(
            "kept {}@{} ({}): {}{tags}",
            escaped(&k.repository),
            k.digest,
            escaped(&k.why),
            escaped(&k.kept_because)
        ));
    }
    for a in &r.absent {
        out.warn(format!("not in the root: {}", escaped(a)));
    }
    let freed = if r.dry_run { "would free" } else { "frees" };
    out.info(format!(
        "{} manifests {verb}, {} kept; `airlift gc` {freed} {} blobs, {} ({} bytes)",
        r.deleted.len(),
        r.kept.len(),
        r.blobs_freed,
        human(r.bytes_freed),
        r.bytes_freed
    ));
    out.document(&json!({
        "status": "ok",
        "exit_code": 0,
        "dry_run": r.dry_run,
        "deleted": r.deleted,
        "kept": r.kept,
        "absent": r.absent,
        "blobs_freed": r.blobs_freed,
        "bytes_freed": r.bytes_freed,
        "warnings": r.warnings,
    }));
}
