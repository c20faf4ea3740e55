//! The layers airlift builds itself (the two a catalog rebuild appends, those of the
//! graph-data image, [`crate::openshift::graphdata`]), written byte-reproducibly: entries sorted by
//! path, uid/gid 0 with empty user and group names, directories 0755 and files 0644,
//! mtime 0, ustar headers; gzip at a fixed level with a fixed header (mtime 0, no file
//! name, OS byte 255 "unknown"). The tar is hashed as it is written (the diff_id), the gzip
//! stream as it is compressed (the blob digest), and the blob committed into the store
//! from its temp file: a layer is never held in memory.
//!
//! The same tree gives the same tar bytes everywhere; the gzip bytes are the same for
//! the same compressor (flate2's Rust backend, pinned by Cargo.lock).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::digest::{Digest, Hasher};
use crate::error::{integrity, usage, IoContext, Result};
use crate::store::BlobStore;

/// The gzip level of the layers a rebuild writes (zlib's default).
const GZIP_LEVEL: u32 = 6;
/// The OS byte of their gzip header: 255, "unknown", the same on every host.
const GZIP_OS: u8 = 255;

/// A layer written into the store.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 and size of the gzip blob.
    pub digest: Digest,
    pub size: u64,
}

/// A layer holding only a whiteout for each of `paths` (image paths, `/A/B`): `A/.wh.B`,
/// without entries for the parent directories (those would replace their owner and mode:
/// `/tmp` must stay 1777 for opm to make its cache under it).
pub(super) fn whiteout_layer(store: &BlobStore, paths: &[String]) -> Result<Built> {
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| {
            let p = p.trim_start_matches('/');
            match p.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/.wh.{base}"),
                None => format!(".wh.{p}"),
            }
        })
        .collect();
    names.sort();
    names.dedup();
    write_layer(store, |tar, temp| {
        for name in &names {
            tar.append_data(&mut header(EntryType::Regular, 0), name, std::io::empty()).at(temp)?;
        }
        Ok(())
    })
}

/// A layer holding the tree at `src` (directories and regular files only) as `root`, an
/// image path such as `/configs`.
pub(crate) fn tree_layer(store: &BlobStore, src: &Path, root: &str) -> Result<Built> {
    let root = root.trim_start_matches('/');
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry.map_err(|e| usage(format!("{}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let Some(rel) = rel.to_str() else {
            return Err(usage(format!("{}: a file name that is not UTF-8", entry.path().display())));
        };
        let kind = entry.file_type();
        if !kind.is_dir() && !kind.is_file() {
            return Err(usage(format!("{}: neither a directory nor a regular file", entry.path().display())));
        }
        let name = if rel.is_empty() { root.to_string() } else { format!("{root}/{rel}") };
        entries.push((name, kind.is_dir(), entry.into_path()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    write_layer(store, |tar, _| {
        for (name, is_dir, path) in &entries {
            if *is_dir {
                tar.append_data(&mut header(EntryType::Directory, 0), format!("{name}/"), std::io::empty()).at(path)?;
                continue;
            }
            append_file(tar, name, path, 0o644)?;
        }
        Ok(())
    })
}

/// A layer holding only the file at `src` as `name` (a path without a directory, e.g.
/// `airlift`), with `mode`.
pub(crate) fn file_layer(store: &BlobStore, src: &Path, name: &str, mode: u32) -> Result<Built> {
    write_layer(store, |tar, _| append_file(tar, name, src, mode))
}

/// Append the regular file at `path` as `name` with `mode`.
fn append_file(tar: &mut LayerTar, name: &str, path: &Path, mode: u32) -> Result<()> {
    let file = File::open(path).at(path)?;
    let size = file.metadata().at(path)?.len();
    let mut h = header(EntryType::Regular, size);
    h.set_mode(mode);
    tar.append_data(&mut h, name, Exactly { inner: file.take(size), left: size }).at(path)?;
    Ok(())
}

/// A header with every field fixed but the type, size and mode.
fn header(kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The tar a layer is written into: hashed (the diff_id), gzipped, hashed again (the blob).
type LayerTar = tar::Builder<Hashing<flate2::write::GzEncoder<Hashing<BufWriter<File>>>>>;

/// The layer `fill` writes into a tar (told the temp file's path, for errors), gzipped into
/// a temp file of `store` and committed as a blob.
fn write_layer(store: &BlobStore, fill: impl FnOnce(&mut LayerTar, &Path) -> Result<()>) -> Result<Built> {
    let temp = store.temp()?;
    let at = temp.path().to_path_buf();
    let file = BufWriter::with_capacity(1 << 20, temp.reopen().at(&at)?);
    let gz =
        GzBuilder::new().mtime(0).operating_system(GZIP_OS).write(Hashing::new(file), Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(Hashing::new(gz));
    fill(&mut tar, &at)?;
    let (gz, diff_id, _) = tar.into_inner().at(&at)?.finish();
    let (file, digest, size) = gz.finish().at(&at)?.finish();
    file.into_inner().map_err(|e| e.into_error()).at(&at)?;
    store.adopt(&at, &digest, Some(digest.clone()), |w| {
        integrity(format!("layer {digest}: {} bytes written are {}", w.size, w.digest))
    })?;
    Ok(Built { diff_id, digest, size })
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, hasher: Hasher::new(), size: 0 }
    }

    fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.size)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file's bytes that must be exactly the size its header gave: a file that shrank
/// while it was archived is an error, not a short entry.
pub(super) struct Exactly<R> {
    pub inner: R,
    pub left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while archived"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
