//! A catalog's config directory read from the image's layers, as a container runtime
//! would see it, without unpacking anything else.
//!
//! Layers are read top first: an entry is written only when no upper layer has the same
//! path, deleted it or an ancestor (`.wh.NAME`), made an ancestor opaque (`.wh..wh..opq`)
//! or put a non-directory at an ancestor; so each file is written once, by the layer whose
//! copy the image shows, and whiteouts never delete anything on disk.
//!
//! Hostile layers: an entry whose path is absolute or has a `..` component, anywhere in
//! a layer, is refused (an error naming the layer and the entry): no honest image builder
//! writes one. Under the config directory only directories and regular files are
//! accepted; a symlink, hard link, device or FIFO there is refused, never followed or
//! recreated, so nothing is ever written outside `into` (every path written is `into`
//! joined with checked normal components, and `into` holds only what was written here).
//! Entries outside the config directory are skipped unread. Modes, owners and times of
//! the layers are not kept: files and directories get the process's defaults (umask).
//! What is written is bounded by [`MAX_CONFIG_BYTES`] and [`MAX_CONFIG_ENTRIES`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};
use crate::text::untrusted;

/// The most bytes a catalog's config directory may hold: the largest real catalog
/// (redhat-operator-index) is about 1 GiB of JSON; a hostile one must not fill the disk.
pub const MAX_CONFIG_BYTES: u64 = 4 << 30;
/// The most entries (files, directories, whiteouts) under a catalog's config directory
/// across its layers: real catalogs have a few thousand.
pub const MAX_CONFIG_ENTRIES: u64 = 1_000_000;

/// The bounds an extraction works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits { bytes: MAX_CONFIG_BYTES, entries: MAX_CONFIG_ENTRIES };
}

/// What the layers above the one being read did to the paths that matter.
#[derive(Default)]
struct Upper {
    /// Deleted by a whiteout: the path and everything under it.
    deleted: HashSet<PathBuf>,
    /// Made opaque: everything under it.
    opaque: HashSet<PathBuf>,
    /// Present, and whether as a directory.
    present: HashMap<PathBuf, bool>,
}

impl Upper {
    /// Whether the layers above hide `path` of a lower layer.
    fn hides(&self, path: &Path) -> bool {
        if self.deleted.contains(path) || self.present.contains_key(path) {
            return true;
        }
        path.ancestors()
            .skip(1)
            .any(|a| self.deleted.contains(a) || self.opaque.contains(a) || self.present.get(a) == Some(&false))
    }

    fn add(&mut self, layer: Upper) {
        self.deleted.extend(layer.deleted);
        self.opaque.extend(layer.opaque);
        self.present.extend(layer.present);
    }
}

/// One extraction: where it writes, what it has written.
struct Extraction<'a> {
    name: &'a str,
    /// The config directory, relative to the image root (`configs`).
    dir: PathBuf,
    into: &'a Path,
    limits: Limits,
    bytes: u64,
    entries: u64,
}

/// Write the config directory `configs_dir` (`/configs`) that `layers` (bottom first) make
/// into `into`; `name` names the image in errors.
pub(crate) fn extract(
    name: &str,
    layers: &[(Digest, PathBuf)],
    configs_dir: &str,
    into: &Path,
    limits: Limits,
) -> Result<()> {
    let dir = PathBuf::from(configs_dir.trim_start_matches('/'));
    let mut run = Extraction { name, dir, into, limits, bytes: 0, entries: 0 };
    let mut upper = Upper::default();
    for (digest, path) in layers.iter().rev() {
        let layer = run.layer(digest, path, &upper)?;
        upper.add(layer);
    }
    match upper.present.get(&run.dir) {
        Some(true) => Ok(()),
        Some(false) => Err(usage(format!("{name}: {configs_dir} in the catalog's layers is not a directory"))),
        None if upper.present.keys().any(|p| p.starts_with(&run.dir)) => Ok(()),
        None => Err(usage(format!("{name}: the catalog's layers have no {configs_dir}"))),
    }
}

impl Extraction<'_> {
    /// Read one layer, writing what the layers above do not hide; what it did, for the
    /// layers below.
    fn layer(&mut self, digest: &Digest, path: &Path, upper: &Upper) -> Result<Upper> {
        let name = self.name;
        let bad = |e: std::io::Error| usage(format!("{name}: layer {digest}: {}", untrusted(&e.to_string())));
        let mut archive = crate::oci::layer::open_layer(path)?;
        let mut this = Upper::default();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path_bytes().into_owned();
            let shown = || format!("{name}: layer {digest}: entry {}", untrusted(&String::from_utf8_lossy(&raw)));
            let Some(path) = normal(&entry.path().map_err(bad)?) else {
                return Err(usage(format!("{}: an absolute path or a `..` component is refused", shown())));
            };
            let Some(file_name) = path.file_name() else { continue }; // the root, `./`
            if let Some(target) = file_name.as_bytes().strip_prefix(b".wh.") {
                let parent = path.parent().unwrap_or(Path::new(""));
                let (set, target) = match target {
                    b".wh..opq" => (&mut this.opaque, parent.to_path_buf()),
                    _ => (&mut this.deleted, parent.join(OsStr::from_bytes(target))),
                };
                if self.related(&target) {
                    self.count(&shown)?;
                    set.insert(target);
                }
                continue;
            }
            if !self.related(&path) || upper.hides(&path) {
                continue;
            }
            let kind = entry.header().entry_type();
            if !path.starts_with(&self.dir) {
                // An ancestor of the config directory: only whether it is a directory matters.
                this.present.insert(path, kind.is_dir());
                continue;
            }
            self.count(&shown)?;
            self.write(&mut entry, &path, &shown)?;
            this.present.insert(path, kind.is_dir());
        }
        Ok(this)
    }

    /// Whether `path` is the config directory, under it or one of its ancestors (the root,
    /// `""`, included).
    fn related(&self, path: &Path) -> bool {
        path.starts_with(&self.dir) || self.dir.starts_with(path)
    }

    fn count(&mut self, shown: &dyn Fn() -> String) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(usage(format!(
                "{}: more than {} entries under the config directory: refused",
                shown(),
                self.limits.entries
            )));
        }
        Ok(())
    }

    /// Write the entry at `path` (under the config directory) into `into`.
    fn write<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &Path, shown: &dyn Fn() -> String) -> Result<()> {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        let dest = self.into.join(rel);
        match entry.header().entry_type() {
            EntryType::Directory => fs::create_dir_all(&dest).at(&dest),
            EntryType::Regular | EntryType::Continuous if rel.as_os_str().is_empty() => {
                Err(usage(format!("{}: the config directory is a file", shown())))
            }
            EntryType::Regular | EntryType::Continuous => self.write_file(entry, &dest, shown),
            other => Err(usage(format!(
                "{}: a {other:?} under the config directory, which holds only directories and regular files",
                shown()
            ))),
        }
    }

    /// Copy a regular file's bytes to `dest`, within the byte bound (checked against the
    /// size its header gives before anything is written).
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        dest: &Path,
        shown: &dyn Fn() -> String,
    ) -> Result<()> {
        let size = entry.size();
        if size > self.limits.bytes - self.bytes {
            return Err(usage(format!(
                "{}: {size} bytes, more than the {} bytes a config directory may hold: refused",
                shown(),
                self.limits.bytes
            )));
        }
        self.bytes += size;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let mut file = File::create(dest).at(dest)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut copied = 0;
        loop {
            let n = entry.read(&mut buf).map_err(|e| usage(format!("{}: {}", shown(), untrusted(&e.to_string()))))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).at(dest)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(usage(format!("{}: {copied} bytes where its header says {size}", shown())));
        }
        Ok(())
    }
}

/// `path` made of normal components only (`.` dropped); `None` when it is absolute or has
/// a `..`.
fn normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}
