//! `airlift receipt`: write what a destination holds (a registry root, an OCI layout, a
//! registry reached over the network) as a receipt for `pack --have`, optionally signed,
//! or show a receipt's summary. The work is [`crate::trip::receipt`]'s and the format
//! [`crate::bundle::receipt`]'s; this parses, calls them and presents.

use std::path::Path;

use serde_json::json;

use crate::bundle::receipt::{signature_path, Receipt};
use crate::cli::ReceiptArgs;
use crate::client::Client;
use crate::error::{refused, usage, Error, Status};
use crate::output::Output;
use crate::size::human;
use crate::text::escaped;
use crate::trip::publish::Destination;
use crate::trip::receipt::{self, by_repository};

/// How a receipt's signature stands, for the summary.
enum Signature {
    /// Verified with the key of this id.
    Verified(String),
    /// A signature file is there; no key was given to check it.
    Unchecked,
    Unsigned,
}

pub fn run(args: &ReceiptArgs, out: &Output) -> anyhow::Result<Status> {
    if let Some(file) = &args.summary {
        return summary(file, args.key.as_deref(), out);
    }
    let file = args.out.as_deref().ok_or_else(|| usage("give --out FILE for the receipt"))?;
    let key = args.key.as_deref().map(|k| super::load_secret_key(k, args.password_file.as_deref())).transpose()?;
    let receipt = if let Some(root) = &args.root {
        receipt::of_root(root)?
    } else if let Some(layout) = &args.layout {
        receipt::of_layout(layout)?
    } else {
        let to =
            args.to.as_deref().ok_or_else(|| usage("give --root ROOT, --layout DIR or --to docker://HOST/PREFIX"))?;
        let client = Client::new(super::client_options(&args.connect))?;
        receipt::of_registry(&client, &Destination::parse(to)?, args.parallel.into())?
    };
    receipt.write(file, key.as_ref())?;
    let signature = match &key {
        Some(k) => Signature::Verified(k.public_key().key_id_hex()),
        None => Signature::Unsigned,
    };
    out.info(format!("wrote {}{}", file.display(), signed_note(file, &signature)));
    present(out, file, &receipt, &signature);
    Ok(Status::Ok)
}

/// `--summary FILE`: load (checking the signature with `key`) and present.
fn summary(file: &Path, key: Option<&Path>, out: &Output) -> anyhow::Result<Status> {
    let (receipt, signature) = match key {
        Some(k) => {
            let key = super::load_public_key(k)?;
            (Receipt::load(file, std::slice::from_ref(&key)).map_err(damaged)?, Signature::Verified(key.key_id_hex()))
        }
        None => {
            let receipt = Receipt::load(file, &[]).map_err(damaged)?;
            let signed = signature_path(file).exists();
            (receipt, if signed { Signature::Unchecked } else { Signature::Unsigned })
        }
    };
    present(out, file, &receipt, &signature);
    Ok(Status::Ok)
}

/// A receipt that is damaged, altered or signed by another key gets a receipt's hint, not
/// a bundle's.
fn damaged(e: Error) -> Error {
    match e {
        Error::Integrity(message) => refused(
            message,
            "do not trust this receipt: write it again at the destination (airlift receipt … --out) and carry that copy",
        ),
        other => other,
    }
}

fn signed_note(file: &Path, signature: &Signature) -> String {
    match signature {
        Signature::Verified(id) => format!(" and {}, signed by key {id}", signature_path(file).display()),
        Signature::Unchecked | Signature::Unsigned => " (unsigned)".to_string(),
    }
}

/// The summary a reviewer reads before the receipt crosses the gap; every string from
/// the receipt is shown escaped (JSON is exact).
fn present(out: &Output, file: &Path, r: &Receipt, signature: &Signature) {
    let (state, shown, key_id) = match signature {
        Signature::Verified(id) => ("verified", format!("verified, signed by key {id}"), Some(id.as_str())),
        Signature::Unchecked => ("unchecked", "present, not checked (give --key SITE.pub)".to_string(), None),
        Signature::Unsigned => ("unsigned", "unsigned".to_string(), None),
    };
    let blob_bytes: u64 = r.blobs.iter().map(|h| h.size).sum();
    let manifest_bytes: u64 = r.manifests.iter().map(|h| h.size).sum();
    let repositories = by_repository(r);
    out.data(format!("receipt {} ({})", r.id, file.display()));
    out.data(format!("  destination: {}", escaped(&r.destination)));
    out.data(format!("  created:     {} by {}", crate::time::rfc3339(r.created), escaped(&r.tool)));
    out.data(format!("  signature:   {shown}"));
    out.data(format!("  blobs:       {} ({})", r.blobs.len(), human(blob_bytes)));
    out.data(format!("  manifests:   {} ({})", r.manifests.len(), human(manifest_bytes)));
    out.data(format!("  tags:        {}", r.tags.len()));
    out.data(format!("  total:       {} ({} bytes)", human(r.total_bytes()), r.total_bytes()));
    out.data(format!("  repositories: {}", repositories.iter().filter(|t| t.name.is_some()).count()));
    for t in &repositories {
        out.data(format!(
            "    {:<40} {:>7} blobs {:>6} manifests {:>6} tags {:>10}",
            t.name.as_deref().map(escaped).unwrap_or_else(|| "(no repository)".into()),
            t.blobs,
            t.manifests,
            t.tags,
            human(t.bytes)
        ));
    }
    out.document(&json!({
        "status": "ok",
        "exit_code": 0,
        "file": file,
        "id": r.id,
        "destination": r.destination,
        "created": crate::time::rfc3339(r.created),
        "created_secs": r.created,
        "tool": r.tool,
        "signature": { "state": state, "key_id": key_id },
        "counts": { "blobs": r.blobs.len(), "manifests": r.manifests.len(), "tags": r.tags.len() },
        "bytes": { "blobs": blob_bytes, "manifests": manifest_bytes, "total": r.total_bytes() },
        "repositories": repositories,
    }));
}
