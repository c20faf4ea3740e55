//! Where a bundle's files are read from. A bundle may be spread over several directories
//! (the mount points of its discs, a stick, a copy on disk): the manifest and its
//! signature come from the first directory that holds the manifest, `SHA256SUMS` from the
//! first that holds it, and each volume file from whichever directory holds it, in the
//! order given. A directory holding a manifest of the same name with other bytes is
//! another bundle's disc: it is named, never read from.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundle::manifest::{Discs, Manifest, MAX_BUNDLE_MANIFEST};
use crate::bundle::names;
use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};
use crate::media;
use crate::text::untrusted;

/// Most directory entries looked at to tell which disc of another bundle a directory is.
const MAX_LISTED: usize = 4096;

/// The directory of `dirs` that holds `file` (the first, in order), if any does. A name
/// that exists in any form counts (a FIFO or a dangling link is the media's problem, and
/// opening it says so).
pub fn holder<'d>(dirs: &'d [PathBuf], file: &str) -> Option<&'d Path> {
    dirs.iter().map(PathBuf::as_path).find(|d| d.join(file).symlink_metadata().is_ok())
}

/// The name of the one bundle in `dirs`, or check the one asked for is well formed.
pub fn bundle_name(dirs: &[PathBuf], name: Option<&str>) -> Result<String> {
    if dirs.is_empty() {
        return Err(usage("give the bundle's directory DIR (or several), or --wait-for-media DIR"));
    }
    if let Some(n) = name {
        if !names::valid_bundle_name(n) {
            return Err(usage(format!("'{n}' is not a valid bundle name")));
        }
        return Ok(n.to_string());
    }
    let mut found = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).at(dir)? {
            let file = entry.at(dir)?.file_name().to_string_lossy().into_owned();
            if let Some(n) = file.strip_suffix(".manifest.json") {
                found.push(n.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    let shown = || dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(usage(format!("{}: no bundle manifest (*.manifest.json) found", shown()))),
        _ => {
            let names: Vec<String> = found.iter().map(|n| untrusted(n)).collect();
            Err(usage(format!("{}: several bundles ({}); choose one with --name", shown(), names.join(", "))))
        }
    }
}

/// Whether `dir` holds any bundle manifest (`*.manifest.json`); an unreadable directory
/// (a drive between discs) holds none.
pub fn has_manifest(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".manifest.json")))
        .unwrap_or(false)
}

/// `Some(why)` when `dir` holds a manifest named for bundle `ours.name` whose bytes are
/// not this bundle's (their sha256 is not `sha256`): another bundle's disc, described from
/// what its manifest says (unsigned, so escaped), or why it cannot be read.
pub fn other_bundle(dir: &Path, sha256: &Digest, ours: &Manifest) -> Option<String> {
    let path = dir.join(names::manifest_file(&ours.name));
    let theirs = match media::read_bounded(&path, MAX_BUNDLE_MANIFEST, "a bundle manifest") {
        Ok(None) => return None,
        Ok(Some(theirs)) if Digest::of(&theirs) == *sha256 => return None,
        Ok(Some(theirs)) => theirs,
        Err(e) => return Some(format!("{}: another bundle's disc? its manifest cannot be read: {e}", dir.display())),
    };
    let this = describe(None, &ours.name, &ours.id, ours.sequence, ours.created);
    let Ok(head) = serde_json::from_slice::<Head>(&theirs) else {
        return Some(format!(
            "{} holds another manifest named {}: not this bundle's (it does not parse); this is {this}",
            dir.display(),
            path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
        ));
    };
    let disc = head.discs.as_ref().and_then(|d| disc_in(dir, d));
    let that = describe(disc.as_deref(), &head.name, &head.id, head.sequence, head.created);
    Some(format!("{} holds {that}, not of {this}", dir.display()))
}

/// `disc LABEL of bundle 'NAME' id ID sequence N created T` (what is unsigned, escaped).
fn describe(disc: Option<&str>, name: &str, id: &str, sequence: u64, created: u64) -> String {
    let disc = disc.map(|d| format!("disc {} of ", untrusted(d))).unwrap_or_default();
    format!(
        "{disc}bundle '{}' id {} sequence {sequence} created {}",
        untrusted(name),
        untrusted(id),
        crate::time::rfc3339(created)
    )
}

/// The label of the disc (of `discs`) whose files `dir` holds, if one matches.
fn disc_in(dir: &Path, discs: &Discs) -> Option<String> {
    let present: HashSet<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .take(MAX_LISTED)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    discs.discs.iter().find(|d| d.files.iter().any(|f| present.contains(f))).map(|d| d.label.clone())
}

/// What another bundle's manifest says of itself: enough to name it, nothing trusted.
#[derive(Deserialize)]
struct Head {
    id: String,
    name: String,
    sequence: u64,
    created: u64,
    #[serde(default)]
    discs: Option<Discs>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_found_in_the_first_directory_holding_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        std::fs::write(b.path().join("x.0002.tar"), b"2").unwrap();
        std::os::unix::fs::symlink("/nonexistent", a.path().join("x.0001.tar")).unwrap();
        assert_eq!(holder(&dirs, "x.0002.tar"), Some(b.path()));
        assert_eq!(holder(&dirs, "x.0001.tar"), Some(a.path()), "a dangling link is found, and refused when opened");
        assert_eq!(holder(&dirs, "x.0003.tar"), None);
    }

    #[test]
    fn the_bundle_name_is_the_one_manifest_name_over_every_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert!(bundle_name(&dirs, None).is_err());
        assert!(!has_manifest(a.path()));
        std::fs::write(a.path().join("ocp.manifest.json"), b"{}").unwrap();
        std::fs::write(b.path().join("ocp.manifest.json"), b"{}").unwrap();
        assert_eq!(bundle_name(&dirs, None).unwrap(), "ocp");
        assert!(has_manifest(b.path()));
        std::fs::write(b.path().join("other.manifest.json"), b"{}").unwrap();
        let e = bundle_name(&dirs, None).unwrap_err().to_string();
        assert!(e.contains("several bundles (ocp, other)"), "{e}");
        assert_eq!(bundle_name(&dirs, Some("other")).unwrap(), "other");
    }
}
