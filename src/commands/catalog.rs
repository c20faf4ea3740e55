//! `airlift catalog filter`: apply an image set's `mirror.operators` entry to a catalog's
//! config directory on disk, as pack does, and show (or write) what it keeps; and the
//! catalog sections pack, list and verify show of a bundle's catalogs.

use anyhow::Context;
use serde_json::{json, Value};

use crate::bundle::manifest::Catalog as Packed;
use crate::catalog::fbc::Catalog;
use crate::catalog::{render, select};
use crate::cli::{CatalogCommand, CatalogFilterArgs};
use crate::error::Status;
use crate::openshift::imageset;
use crate::output::Output;
use crate::text::escaped;

pub fn run(cmd: &CatalogCommand, out: &Output) -> anyhow::Result<Status> {
    match cmd {
        CatalogCommand::Filter(args) => filter(args, out),
    }
}

fn filter(args: &CatalogFilterArgs, out: &Output) -> anyhow::Result<Status> {
    let set = imageset::load(&args.config)?;
    set.warnings.iter().for_each(|w| out.warn(w));
    let filter = set.operator(&args.config.display().to_string(), args.catalog.as_deref())?;
    let catalog = Catalog::read(&args.dir)?;
    let selection = select::select(&catalog, filter)
        .with_context(|| format!("{}: mirror.operators entry {}", args.config.display(), escaped(&filter.catalog)))?;
    for n in selection.notes() {
        if n.is_warning() {
            out.warn(n)
        } else {
            out.info(n)
        }
    }
    let notes: Vec<String> = selection.notes().iter().map(|n| n.to_string()).collect();
    let bundles = selection.bundles();
    for b in &bundles {
        out.data(format!(
            "{}  {}  {}  {}",
            escaped(&b.package),
            escaped(&b.name),
            escaped(&b.version),
            escaped(&b.image)
        ));
    }
    if let Some(dir) = &args.out {
        render::write(&catalog, &selection, dir)?;
        out.info(format!("wrote the kept config of {} bundle(s) into {}", bundles.len(), dir.display()));
    }
    out.document(&json!({
        "status": "ok",
        "exit_code": 0,
        "catalog": filter.catalog,
        "filter": filter,
        "bundles": bundles,
        "images": selection.images(),
        "notes": notes,
        "out": args.out,
    }));
    Ok(Status::Ok)
}

/// The `catalogs` section of a JSON document (pack, list, verify).
pub fn document(catalogs: &[Packed]) -> Value {
    Value::Array(
        catalogs
            .iter()
            .map(|c| {
                json!({
                    "source": c.source, "digest": c.digest, "filter": c.filter, "rebuilt": c.rebuilt,
                    "target": c.target, "bundles": c.bundles, "images": c.images,
                })
            })
            .collect(),
    )
}

/// The short human section (pack, list, verify, unpack): per catalog its target, source,
/// filter, and the packages kept with their bundle counts.
pub fn print(out: &Output, catalogs: &[Packed]) {
    if catalogs.is_empty() {
        return;
    }
    out.data("catalogs:");
    for c in catalogs {
        let carried = match &c.rebuilt {
            Some(d) => format!("rebuilt {d}"),
            None => "carried unchanged".to_string(),
        };
        out.data(format!("  {} ({carried})", escaped(&c.target)));
        out.data(format!("    from {}@{}", escaped(&c.source), c.digest));
        out.data(format!("    filter {}", escaped(&c.filter.to_string())));
        let mut packages: Vec<(&str, usize)> = Vec::new();
        for b in &c.bundles {
            match packages.iter_mut().find(|(p, _)| *p == b.package) {
                Some((_, n)) => *n += 1,
                None => packages.push((&b.package, 1)),
            }
        }
        let listed: Vec<String> = packages.iter().map(|(p, n)| format!("{} ({n})", escaped(p))).collect();
        out.data(format!("    {} bundle(s), {} image(s): {}", c.bundles.len(), c.images.len(), listed.join(", ")));
    }
}
