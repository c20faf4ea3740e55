//! Unpacking into an OCI layout: chunks are verified by the reader, then written straight
//! to their final place. A whole entry goes to a temp file renamed into place; a split
//! entry's parts are written at their offsets into a partial file and recorded in a
//! journal, so a killed run resumes where it stopped and volumes may come in any order.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use tempfile::NamedTempFile;

use crate::bundle::manifest::{Compression, Entry, EntryKind};
use crate::bundle::reader::{Action, Bundle, ChunkWriter, Sink};
use crate::digest::Hasher;
use crate::error::{integrity, Error, IoContext, Result};
use crate::store::{self, BlobStore, Writeback};

/// Most memory a zstd frame may ask for (2^24 = 16 MiB window); pack uses far less.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

pub struct Extractor<'b> {
    bundle: &'b Bundle,
    store: &'b BlobStore,
    journal_path: PathBuf,
    /// Journal file and the set of chunks it records, under one lock.
    journal: Mutex<(Option<File>, HashSet<usize>)>,
}

impl<'b> Extractor<'b> {
    /// Load the journal of this bundle (if a previous run left one) and finish entries
    /// whose parts were all written before that run stopped.
    pub fn new(bundle: &'b Bundle, store: &'b BlobStore) -> Result<Extractor<'b>> {
        let dir = store.state_dir().join("journal");
        fs::create_dir_all(&dir).at(&dir)?;
        fs::create_dir_all(store.state_dir().join("partial")).at(store.state_dir())?;
        let journal_path = dir.join(&bundle.manifest.id);
        let mut done = HashSet::new();
        if let Ok(file) = File::open(&journal_path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                // A torn last line (killed mid-append) simply does not count.
                let Some((c, sha)) = line.split_once(' ') else { continue };
                let Ok(c) = c.parse::<usize>() else { continue };
                if bundle.manifest.chunks.get(c).is_some_and(|ch| ch.sha256.hex() == sha) {
                    done.insert(c);
                }
            }
        }
        let ex = Extractor { bundle, store, journal_path, journal: Mutex::new((None, done)) };
        for e in 0..bundle.manifest.entries.len() {
            if ex.entry_chunks(e).len() > 1 && ex.destination(e).is_some() && !ex.committed(e) && ex.all_parts_done(e) {
                ex.finalize(e)?;
            }
        }
        Ok(ex)
    }

    fn entry(&self, e: usize) -> &Entry {
        &self.bundle.manifest.entries[e]
    }

    fn entry_chunks(&self, e: usize) -> &[usize] {
        &self.bundle.index.entry_chunks[e]
    }

    /// Where an entry ends up; `None` for entries that are only checked.
    fn destination(&self, e: usize) -> Option<PathBuf> {
        let entry = self.entry(e);
        match entry.kind {
            EntryKind::Blob => Some(self.store.path(&entry.digest)),
            EntryKind::File => Some(self.store.root().join(&entry.path)),
            EntryKind::Label | EntryKind::Layout | EntryKind::Installer => None,
        }
    }

    /// The entry is in place (renames are atomic, so its presence means it was verified).
    pub fn committed(&self, e: usize) -> bool {
        let entry = self.entry(e);
        match entry.kind {
            EntryKind::Blob => self.store.contains(&entry.digest, entry.size),
            _ => self.destination(e).and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.len() == entry.size),
        }
    }

    fn all_parts_done(&self, e: usize) -> bool {
        match self.journal.lock() {
            Ok(j) => self.entry_chunks(e).iter().all(|c| j.1.contains(c)),
            Err(_) => false,
        }
    }

    fn partial_path(&self, e: usize) -> PathBuf {
        self.store.state_dir().join("partial").join(format!("{}.{e}", self.bundle.manifest.id))
    }

    /// Record a committed part; returns whether it completed its entry.
    fn record(&self, c: usize) -> Result<bool> {
        let e = self.bundle.index.chunk_entry[c];
        let mut guard = self.journal.lock().map_err(|_| crate::error::usage("internal: journal lock poisoned"))?;
        if guard.0.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.journal_path).at(&self.journal_path)?;
            guard.0 = Some(f);
        }
        let line = format!("{c} {}\n", self.bundle.manifest.chunks[c].sha256.hex());
        if let Some(f) = guard.0.as_mut() {
            f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).at(&self.journal_path)?;
        }
        guard.1.insert(c);
        Ok(self.entry_chunks(e).iter().all(|x| guard.1.contains(x)))
    }

    /// Move a completely written split entry into place.
    fn finalize(&self, e: usize) -> Result<()> {
        let entry = self.entry(e);
        let partial = self.partial_path(e);
        let Some(dest) = self.destination(e) else { return Ok(()) };
        match entry.compression {
            Compression::None => {
                let len = fs::metadata(&partial).at(&partial)?.len();
                if len != entry.size {
                    return Err(integrity(format!("{}: assembled {len} bytes, expected {}", entry.path, entry.size)));
                }
                File::open(&partial).and_then(|f| f.sync_all()).at(&partial)?;
                if let Some(dir) = dest.parent() {
                    fs::create_dir_all(dir).at(dir)?;
                }
                fs::rename(&partial, &dest).at(&dest)?;
                store::sync_dir(&dest)
            }
            Compression::Zstd => {
                let mut temp = self.store.temp()?;
                let source = File::open(&partial).at(&partial)?;
                expand(source, entry, temp.as_file_mut())?;
                store::commit(temp, &dest)?;
                fs::remove_file(&partial).at(&partial)
            }
        }
    }

    /// Drop the journal and partial files once every entry of the bundle is in place.
    pub fn cleanup(&self) -> Result<()> {
        if let Ok(mut guard) = self.journal.lock() {
            guard.0 = None;
        }
        if self.journal_path.exists() {
            fs::remove_file(&self.journal_path).at(&self.journal_path)?;
        }
        for e in 0..self.bundle.manifest.entries.len() {
            let p = self.partial_path(e);
            if p.exists() {
                fs::remove_file(&p).at(&p)?;
            }
        }
        Ok(())
    }
}

impl Sink for Extractor<'_> {
    fn action(&self, c: usize) -> Action {
        let e = self.bundle.index.chunk_entry[c];
        if self.destination(e).is_none() {
            return Action::Check;
        }
        if self.committed(e) {
            return Action::Skip;
        }
        let done = self.journal.lock().map(|j| j.1.contains(&c)).unwrap_or(false);
        if done {
            Action::Skip
        } else {
            Action::Write
        }
    }

    fn open(&self, c: usize) -> Result<Box<dyn ChunkWriter + '_>> {
        let e = self.bundle.index.chunk_entry[c];
        let entry = self.entry(e);
        let dest = self.destination(e).ok_or_else(|| crate::error::usage("internal: no destination"))?;
        if self.entry_chunks(e).len() > 1 {
            let path = self.partial_path(e);
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
            let offset = self.bundle.index.chunk_stored_offset[c];
            return Ok(Box::new(PartWriter { ex: self, c, e, file, path, offset, writeback: Writeback::default() }));
        }
        let temp = self.store.temp()?;
        Ok(match entry.compression {
            Compression::None => Box::new(WholeWriter { temp, dest, written: 0, writeback: Writeback::default() }),
            Compression::Zstd => {
                let sink = Bounded { temp, entry: entry.clone(), written: 0, hasher: Hasher::new(), over: false };
                let mut dec = zstd::stream::write::Decoder::new(sink).at(&dest)?;
                dec.window_log_max(ZSTD_WINDOW_LOG_MAX).at(&dest)?;
                Box::new(ZstdWriter { dec, dest })
            }
        })
    }
}

/// A whole uncompressed entry: its chunk hash is its digest.
struct WholeWriter {
    temp: NamedTempFile,
    dest: PathBuf,
    written: u64,
    writeback: Writeback,
}

impl ChunkWriter for WholeWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.temp.write_all(data).at(self.temp.path())?;
        self.written += data.len() as u64;
        self.writeback.wrote(self.temp.as_file(), self.written);
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        store::commit(self.temp, &self.dest)
    }
}

/// Expanded output of a compressed entry, refusing to grow past the declared size.
struct Bounded {
    temp: NamedTempFile,
    entry: Entry,
    written: u64,
    hasher: Hasher,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.entry.size {
            self.over = true;
            return Err(std::io::Error::other("expands past its declared size"));
        }
        self.temp.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

struct ZstdWriter {
    dec: zstd::stream::write::Decoder<'static, Bounded>,
    dest: PathBuf,
}

fn expansion_error(entry: &Entry, detail: impl std::fmt::Display) -> Error {
    integrity(format!(
        "zstd stream of '{}' is invalid or expands past its declared size of {} bytes: {detail}",
        entry.path, entry.size
    ))
}

impl ChunkWriter for ZstdWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self.dec.write_all(data) {
            Ok(()) => Ok(()),
            Err(e) if self.dec.get_ref().over => Err(expansion_error(&self.dec.get_ref().entry, e)),
            Err(e) => Err(expansion_error(&self.dec.get_ref().entry, e)),
        }
    }
    fn commit(mut self: Box<Self>) -> Result<()> {
        let entry = self.dec.get_ref().entry.clone();
        self.dec.flush().map_err(|e| expansion_error(&entry, e))?;
        let sink = self.dec.into_inner();
        check_expanded(&sink.entry, sink.written, sink.hasher.finish())?;
        store::commit(sink.temp, &self.dest)
    }
}

fn check_expanded(entry: &Entry, size: u64, digest: crate::digest::Digest) -> Result<()> {
    if size != entry.size || digest != entry.digest {
        return Err(integrity(format!(
            "'{}' expands to {size} bytes with {digest}; the signed manifest says {} bytes with {}",
            entry.path, entry.size, entry.digest
        )));
    }
    Ok(())
}

/// Decompress a whole stored stream into `out`, bounded by the declared size.
fn expand(source: impl Read, entry: &Entry, out: &mut File) -> Result<()> {
    let mut dec = zstd::stream::read::Decoder::new(source).map_err(|e| expansion_error(entry, e))?;
    dec.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| expansion_error(entry, e))?;
    let mut limited = dec.take(entry.size + 1);
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = limited.read(&mut buf).map_err(|e| expansion_error(entry, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > entry.size {
            return Err(expansion_error(entry, "too long"));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| expansion_error(entry, e))?;
    }
    check_expanded(entry, total, hasher.finish())
}

/// One part of a split entry, written in place into the entry's partial file.
struct PartWriter<'x, 'b> {
    ex: &'x Extractor<'b>,
    c: usize,
    e: usize,
    file: File,
    path: PathBuf,
    offset: u64,
    writeback: Writeback,
}

impl ChunkWriter for PartWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, self.offset).at(&self.path)?;
        self.offset += data.len() as u64;
        self.writeback.wrote(&self.file, self.offset);
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        self.file.sync_data().at(&self.path)?;
        if self.ex.record(self.c)? {
            self.ex.finalize(self.e)?;
        }
        Ok(())
    }
}
