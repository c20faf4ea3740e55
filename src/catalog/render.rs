//! The kept config, written as a catalog's config directory: `OUT/<package>/catalog.json`
//! per kept package, holding in this order the `olm.package` (its `defaultChannel` the
//! selection's), the kept `olm.channel`s by name (entries only for kept bundles), the kept
//! `olm.bundle`s by name, the `olm.deprecations` (entries only for what is kept; dropped
//! when none is left), then the package's objects of other schemas as read. Objects of
//! other schemas that name no package are kept, as read, in `OUT/catalog.json` (as
//! oc-mirror keeps them); a package cannot be named so.
//!
//! Each object is re-read from its place in the catalog (only kept objects are read) and
//! re-serialized: JSON, keys sorted, four-space indent as opm writes, one object after
//! another. The same catalog and selection give the same bytes on any host; files are
//! 0644, directories 0755.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::error::{usage, IoContext, Result};
use crate::oci::layout::read_limited;
use crate::store::{write_file, Commit};
use crate::text::{escaped, untrusted};

use super::fbc::{for_each_object, is_yaml, shown, At, Catalog, Location, Package, MAX_CATALOG_FILE};
use super::select::{KeptPackage, Selection};

/// The file objects that name no package go to.
const GLOBAL_FILE: &str = "catalog.json";

/// Write the kept config under `out` (absent or empty).
pub fn write(catalog: &Catalog, selection: &Selection, out: &Path) -> Result<()> {
    make_dir(out)?;
    if fs::read_dir(out).at(out)?.next().is_some() {
        return Err(usage(format!("{}: the output directory is not empty", shown(out))));
    }
    for (name, kept) in selection.packages() {
        let package =
            catalog.package(name).ok_or_else(|| usage(format!("package {} is not in the catalog", untrusted(name))))?;
        if name == GLOBAL_FILE {
            return Err(usage(format!("package {}: the name is reserved for objects of no package", untrusted(name))));
        }
        let objects = package_objects(catalog, package, kept)?;
        let dir = out.join(name);
        make_dir(&dir)?;
        write_file(&dir.join("catalog.json"), &serialize(&objects)?, Commit::PUBLIC)?;
    }
    if !catalog.global().is_empty() {
        let mut values = read_objects(catalog, catalog.global())?;
        let objects: Vec<Value> = catalog.global().iter().filter_map(|l| values.remove(l)).collect();
        write_file(&out.join(GLOBAL_FILE), &serialize(&objects)?, Commit::PUBLIC)?;
    }
    Ok(())
}

/// The objects of one kept package, in the rendered order.
fn package_objects(catalog: &Catalog, package: &Package, kept: &KeptPackage) -> Result<Vec<Value>> {
    let channels: Vec<Location> =
        kept.channels.keys().filter_map(|c| package.channels.get(c)).map(|c| c.location).collect();
    let bundles: Vec<Location> =
        kept.bundles.iter().filter_map(|b| package.bundles.get(b)).map(|b| b.location).collect();
    let wanted: Vec<Location> = std::iter::once(package.location)
        .chain(channels.iter().copied())
        .chain(bundles.iter().copied())
        .chain(package.deprecations.iter().copied())
        .chain(package.others.iter().copied())
        .collect();
    let mut values = read_objects(catalog, &wanted)?;
    let mut take = |l: &Location| {
        values.remove(l).ok_or_else(|| {
            usage(format!(
                "{}: an object of package {} is gone",
                shown(&catalog.path(l.file)),
                untrusted(&package.name)
            ))
        })
    };
    let mut objects = Vec::with_capacity(wanted.len());
    let mut head = take(&package.location)?;
    if let (Some(d), Some(obj)) = (&kept.default_channel, head.as_object_mut()) {
        obj.insert("defaultChannel".to_string(), Value::String(d.clone()));
    }
    objects.push(head);
    for (location, entries) in channels.iter().zip(kept.channels.values()) {
        let mut channel = take(location)?;
        retain_entries(&mut channel, |e| e.get("name").and_then(Value::as_str).is_some_and(|n| entries.contains(n)));
        objects.push(channel);
    }
    for location in &bundles {
        objects.push(take(location)?);
    }
    for location in &package.deprecations {
        let mut deprecation = take(location)?;
        retain_entries(&mut deprecation, |e| deprecation_kept(e, kept));
        let left = deprecation.get("entries").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if left {
            objects.push(deprecation);
        }
    }
    for location in &package.others {
        objects.push(take(location)?);
    }
    Ok(objects)
}

fn retain_entries(object: &mut Value, keep: impl Fn(&Value) -> bool) {
    if let Some(entries) = object.get_mut("entries").and_then(Value::as_array_mut) {
        entries.retain(keep);
    }
}

/// A deprecation entry stays when what it references is kept (a package reference always).
fn deprecation_kept(entry: &Value, kept: &KeptPackage) -> bool {
    let reference = entry.get("reference");
    let name = reference.and_then(|r| r.get("name")).and_then(Value::as_str).unwrap_or_default();
    match reference.and_then(|r| r.get("schema")).and_then(Value::as_str) {
        Some("olm.bundle") => kept.bundles.contains(name),
        Some("olm.channel") => kept.channels.contains_key(name),
        _ => true,
    }
}

/// Read the objects at `locations`, each file opened once; a JSON object is read from its
/// byte range alone.
fn read_objects(catalog: &Catalog, locations: &[Location]) -> Result<HashMap<Location, Value>> {
    let files: BTreeSet<usize> = locations.iter().map(|l| l.file).collect();
    let mut values = HashMap::with_capacity(locations.len());
    for file in files {
        let path = catalog.path(file);
        let here: Vec<&Location> = locations.iter().filter(|l| l.file == file).collect();
        if is_yaml(&path) {
            let bytes = read_limited(&path, MAX_CATALOG_FILE)?;
            for_each_object(&path, &bytes, |at, _, value: Value| {
                let location = Location { file, at };
                if here.contains(&&location) {
                    values.insert(location, value);
                }
                Ok(())
            })?;
            continue;
        }
        let mut f = File::open(&path).at(&path)?;
        for &&location in &here {
            let At::Bytes(start, end) = location.at else { continue };
            let mut json = vec![0; end - start];
            f.seek(SeekFrom::Start(start as u64)).and_then(|_| f.read_exact(&mut json)).at(&path)?;
            values.insert(location, parse(&path, location, &json)?);
        }
    }
    Ok(values)
}

fn parse(path: &Path, location: Location, json: &[u8]) -> Result<Value> {
    serde_json::from_slice(json).map_err(|e| {
        usage(format!("{}: the object read at {:?} changed: {}", shown(path), location.at, escaped(&e.to_string())))
    })
}

/// Objects one after another, each indented by four spaces as opm writes them.
fn serialize(objects: &[Value]) -> Result<Vec<u8>> {
    use serde::Serialize;
    let mut out = Vec::new();
    for object in objects {
        let mut json =
            serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
        object.serialize(&mut json).map_err(|e| usage(format!("rendering the catalog: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// A directory, mode 0755 whatever the umask.
fn make_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).at(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).at(dir)
}

#[cfg(test)]
mod tests;
