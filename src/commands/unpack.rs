//! `airlift unpack`: verify while reading and write an OCI image layout or into a registry
//! root, resumably, or push into an existing registry (`--to`) from a staging store. The
//! work is [`crate::trip::unpack`]'s; this parses, calls it and presents the result.

use serde_json::{json, Value};

use crate::bundle::extract::Extractor;
use crate::bundle::manifest::image_label;
use crate::bundle::reader::{self, Bundle};
use crate::cli::UnpackArgs;
use crate::client::Client;
use crate::error::{usage, Status};
use crate::openshift::cluster::Results;
use crate::output::Output;
use crate::trip::publish::{Destination, PushOptions};
use crate::trip::target::{Layout, Published, Push, Root, Target};
use crate::trip::unpack::{Lacking, Recovered, Unpack};

pub fn run(args: &UnpackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_public_key(&args.key)?;
    let tell = |s: &str| out.prompt(s);
    let watch = super::watch(&args.media, &tell);
    let bundle = super::open_bundle(&args.bundle, watch.as_ref(), &key)?;
    bundle.check_expiry(crate::time::now())?;
    let target = open_target(args, out)?;
    let root = target.store().root().display().to_string();
    let waiting = |pid: Option<u32>| {
        let holder = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        out.info(format!("waiting for another unpack of {root}{holder}"));
    };
    let (tags, allow) = (args.release_tags, args.allow_rollback);
    let mut unpack = Unpack::start(&bundle, target.as_ref(), tags, allow, waiting, &|w| out.warn(w))?;
    let extractor = unpack.extractor()?;
    if !args.no_space_check {
        unpack.check_space(&extractor)?;
    }
    let progress = out.progress();
    let missing = |r: &reader::VolumeReport| out.info(format!("{} is not here yet", r.file));
    let jobs = super::jobs(&args.read);
    let mut fed = unpack.read_volumes(&extractor, jobs, progress.as_ref(), &missing, watch.as_ref())?;
    let recovered = unpack.recover(&extractor, &mut fed.reports, jobs, progress.as_ref())?;
    present_recovered(out, &recovered);
    let damaged = present_damaged(out, &extractor);
    let finished = unpack.finish(&extractor)?;
    present_published(out, &bundle, &finished.published, target.as_ref());
    let lacking = present_lacking(out, &bundle, &finished.lacking, target.as_ref());
    let image_policy = args.image_policy.as_deref().map(crate::trip::attached::policy_key).transpose()?;
    let results = unpack
        .cluster_results(
            &finished.complete,
            args.results.as_deref(),
            args.merge_pull_secret.as_deref(),
            image_policy.as_deref(),
        )?
        .map(|r| present_results(out, &r));
    let (from_journal, checked_now) = present_already_complete(out, &extractor);
    let general = bundle.elsewhere.clone();
    let status = match super::verify::summarize(&fed.reports, &general) {
        Status::Ok if !finished.all_done => Status::Incomplete,
        status => status,
    };
    if finished.all_done && status == Status::Ok {
        extractor.cleanup()?;
    }
    let mut doc = super::verify::print_report(out, &bundle, &fed, &general, &[], status, "unpack");
    out.info(format!(
        "{} of {} image(s) complete in {}",
        finished.complete.len(),
        bundle.manifest.images.len(),
        target.describe()
    ));
    doc["destination"] = json!(target.describe());
    doc["already_complete"] = json!({ "from_journal": from_journal, "checked_now": checked_now });
    doc["damaged_in_store"] = json!(damaged
        .iter()
        .map(|(path, replaced)| json!({ "entry": path, "replaced": replaced }))
        .collect::<Vec<_>>());
    doc["moved"] = json!(finished.published.moved);
    doc["rebuilt_from_parity"] = json!(recovered.rebuilt);
    doc["lacking"] = lacking;
    if let Some((key, section)) = target.document(&bundle, &finished.published) {
        doc[key] = section;
    }
    if let Some(r) = results {
        doc["results"] = r;
    }
    out.document(&doc);
    Ok(status)
}

/// Entries the store held that did not match their signed digests (warned of): each path
/// and whether it was replaced from the bundle.
fn present_damaged(out: &Output, extractor: &Extractor) -> Vec<(String, bool)> {
    let damaged = extractor.damaged();
    for (path, replaced) in &damaged {
        out.warn(format!(
            "the stored copy of {path} did not match its signed digest: {}",
            if *replaced { "replaced from the bundle" } else { "removed; the volume holding it is needed" }
        ));
    }
    damaged
}

/// What an earlier run (its journal) or the store already held, said when anything was.
fn present_already_complete(out: &Output, extractor: &Extractor) -> (usize, usize) {
    let (from_journal, checked_now) = extractor.already_complete();
    if from_journal + checked_now > 0 {
        out.data(format!(
            "already complete: {from_journal} entr(y/ies) committed by an earlier run of this bundle (its journal), \
             {checked_now} found in place and checked against their signed digests now"
        ));
    }
    (from_journal, checked_now)
}

/// The target the arguments name.
fn open_target(args: &UnpackArgs, out: &Output) -> crate::error::Result<Box<dyn Target>> {
    let authfile = args.connect.authfile.clone();
    if let Some(layout) = &args.layout {
        return Ok(Box::new(Layout::create(layout)?));
    }
    if let Some(to) = &args.to {
        let to = Destination::parse(to)?;
        let staging = match &args.cache {
            Some(c) => c.clone(),
            None => crate::source::registry::default_cache_dir()?.join("push"),
        };
        let client = Client::new(super::client_options(&args.connect))?;
        let options = PushOptions { chunk: args.upload_chunk.0, parallel: args.parallel.into() };
        return Ok(Box::new(Push::open(&staging, to, client, options, authfile)?));
    }
    let root = args
        .root
        .as_deref()
        .ok_or_else(|| usage("give --layout OUT, --root ROOT or --to docker://HOST[:PORT][/PREFIX]"))?;
    let report = |done: &crate::registry::install::Installed| super::install::present(out, done);
    Ok(Box::new(Root::open(root, args.hostname.clone(), !args.no_start, args.prefix.clone(), authfile, report)?))
}

/// Print the references the images are pulled by and what a push did, then the refs
/// that moved.
fn present_published(out: &Output, bundle: &Bundle, published: &Published, target: &dyn Target) {
    for (_, reference) in &published.references {
        out.info(format!("  {reference}"));
    }
    if let Some(p) = &published.pushed {
        out.info(format!(
            "pushed {} blob(s), manifest(s) and tag(s) ({} uploaded), mounted {} blob(s), {} already there",
            p.pushed,
            crate::size::human(p.bytes),
            p.mounted,
            p.skipped
        ));
    }
    for m in &published.moved {
        out.warn(format!(
            "ref {} in {} moved from {} to {} (bundle '{}')",
            m.reference,
            target.describe(),
            m.from,
            m.to,
            bundle.manifest.name
        ));
    }
}

/// Name each blob a differential bundle omits that the target does not hold, the base it
/// was expected from and the images it keeps back; returns their JSON.
fn present_lacking(out: &Output, bundle: &Bundle, lacking: &[Lacking], target: &dyn Target) -> Value {
    let m = &bundle.manifest;
    let mut doc = Vec::new();
    for l in lacking {
        let o = &m.omitted[l.omitted];
        let base = m.base(&o.base).map(|b| b.describe()).unwrap_or_default();
        let images: Vec<String> = l.images.iter().map(|&i| image_label(&m.images[i])).collect();
        out.warn(format!(
            "blob {} ({}) is not in {}: this differential bundle expects it from {base}; it keeps back {}",
            o.digest,
            crate::size::human(o.size),
            target.describe(),
            images.join(", ")
        ));
        doc.push(json!({ "digest": o.digest, "size": o.size, "base": base, "images": images }));
    }
    if !lacking.is_empty() {
        out.info(format!(
            "{} image(s) wait for what the bundle relies on: unpack the bundles or content it was made against              into {}, then run this again",
            lacking.iter().flat_map(|l| &l.images).collect::<std::collections::HashSet<_>>().len(),
            target.describe()
        ));
    }
    Value::Array(doc)
}

/// Say which volumes were rebuilt from parity, or why they could not be.
fn present_recovered(out: &Output, recovered: &Recovered) {
    for file in &recovered.rebuilt {
        out.info(format!(
            "{file} was missing or damaged: rebuilt from the recovery volumes and read from the rebuilt copy"
        ));
    }
    if let Some(why) = &recovered.failed {
        out.warn(format!("the lost volumes could not be rebuilt from the recovery volumes: {why}"));
    }
}

/// Print where the cluster results are; returns their JSON.
fn present_results(out: &Output, r: &Results) -> Value {
    out.info(format!("what the cluster needs to use the mirror is in {}:", r.dir.display()));
    for (what, path) in &r.written.files {
        out.info(format!("  {what}: {}", path.display()));
    }
    if let Some(p) = &r.pull_secret {
        out.info(format!("  pull secret with the mirror's credentials: {}", p.display()));
    }
    if r.tagged > 0 {
        out.info(format!("  {} release component tag(s) VERSION-ARCH-NAME added", r.tagged));
    }
    r.document()
}
