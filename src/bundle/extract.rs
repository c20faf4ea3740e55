//! Unpacking into an OCI layout: chunks are verified by the reader, then written straight
//! to their final place. A whole entry goes to a temp file renamed into place; a split
//! entry's parts are written at their offsets into a partial file and recorded in a
//! journal, so a killed run resumes where it stopped and volumes may come in any order.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use tempfile::NamedTempFile;

use crate::bundle::expand::{expand, Expander};
use crate::bundle::manifest::{Compression, Entry, EntryKind};
use crate::bundle::reader::{Action, Bundle, ChunkWriter, Sink};
use crate::digest::Hasher;
use crate::error::{integrity, IoContext, Result};
use crate::store::{self, BlobStore, DirectWriter};

pub struct Extractor<'b> {
    bundle: &'b Bundle,
    store: &'b BlobStore,
    /// Where included files go.
    files_dir: PathBuf,
    journal_path: PathBuf,
    /// Journal file and the set of chunks it records, under one lock.
    journal: Mutex<(Option<File>, HashSet<usize>)>,
    /// Running sha256 of split entries whose parts were written in order in this run:
    /// entry → (next part, hash so far). Saves re-reading the entry at commit.
    rolling: Mutex<HashMap<usize, (u32, Hasher)>>,
}

impl<'b> Extractor<'b> {
    /// Load the journal of this bundle (if a previous run left one) and finish entries
    /// whose parts were all written before that run stopped.
    pub fn new(bundle: &'b Bundle, store: &'b BlobStore, files_dir: PathBuf) -> Result<Extractor<'b>> {
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
        let ex = Extractor {
            bundle,
            store,
            files_dir,
            journal_path,
            journal: Mutex::new((None, done)),
            rolling: Mutex::default(),
        };
        for e in 0..bundle.manifest.entries.len() {
            if ex.entry_chunks(e).len() > 1 && ex.destination(e).is_some() && !ex.committed(e) && ex.all_parts_done(e) {
                ex.finalize(e, None)?;
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
            EntryKind::File => Some(self.files_dir.join(entry.path.strip_prefix(crate::bundle::names::FILES_PREFIX)?)),
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

    /// Move a completely written split entry into place, once its whole content hashes to
    /// its digest (`hashed`: the running hash of all its parts, when this run has it).
    fn finalize(&self, e: usize, hashed: Option<Hasher>) -> Result<()> {
        let entry = self.entry(e);
        let partial = self.partial_path(e);
        let Some(dest) = self.destination(e) else { return Ok(()) };
        let checked = match entry.compression {
            Compression::None => {
                let digest = match hashed {
                    Some(h) => h.finish(),
                    None => crate::digest::file_digest(&partial)?,
                };
                let len = fs::metadata(&partial).at(&partial)?.len();
                if len != entry.size || digest != entry.digest {
                    Err(integrity(format!(
                        "'{}' assembled from its parts is {len} bytes with {digest}; the signed manifest says {} bytes with {}",
                        entry.path, entry.size, entry.digest
                    )))
                } else {
                    File::open(&partial).and_then(|f| f.sync_all()).at(&partial)?;
                    if let Some(dir) = dest.parent() {
                        fs::create_dir_all(dir).at(dir)?;
                    }
                    fs::rename(&partial, &dest).at(&dest)?;
                    return store::sync_dir(&dest);
                }
            }
            Compression::Zstd => {
                let source = File::open(&partial).at(&partial)?;
                expand(source, entry, self.store.temp()?).and_then(|temp| store::commit(temp, &dest))
            }
        };
        if checked.is_err() {
            // Start this entry over on the next run rather than trust its parts again.
            self.forget(e)?;
        }
        fs::remove_file(&partial).at(&partial)?;
        checked
    }

    /// Drop an entry's parts from the journal.
    fn forget(&self, e: usize) -> Result<()> {
        let mut guard = self.journal.lock().map_err(|_| crate::error::usage("internal: journal lock poisoned"))?;
        for c in self.entry_chunks(e) {
            guard.1.remove(c);
        }
        guard.0 = None;
        let mut kept: Vec<usize> = guard.1.iter().copied().collect();
        kept.sort_unstable();
        let text: String =
            kept.iter().map(|&c| format!("{c} {}\n", self.bundle.manifest.chunks[c].sha256.hex())).collect();
        store::write_atomic(&self.journal_path, text.as_bytes())
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
            let part = self.bundle.manifest.chunks[c].part;
            let hasher = match self.rolling.lock() {
                Ok(mut r) => match r.remove(&e) {
                    Some((next, h)) if next == part => Some(h),
                    _ if part == 0 => Some(Hasher::new()),
                    _ => None,
                },
                Err(_) => None,
            };
            let file = DirectWriter::at(file, &path, offset, self.store.direct_io());
            return Ok(Box::new(PartWriter { ex: self, c, e, file, hasher }));
        }
        let temp = self.store.temp()?;
        Ok(match entry.compression {
            Compression::None => {
                Box::new(WholeWriter { file: DirectWriter::temp(&temp, self.store.direct_io())?, temp, dest })
            }
            Compression::Zstd => Box::new(ZstdWriter { exp: Expander::new(entry, temp)?, dest }),
        })
    }
}

/// A whole uncompressed entry: its chunk hash is its digest.
struct WholeWriter {
    temp: NamedTempFile,
    file: DirectWriter,
    dest: PathBuf,
}

impl ChunkWriter for WholeWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        self.file.finish()?;
        store::commit(self.temp, &self.dest)
    }
}

/// A whole compressed entry, expanded while it streams in.
struct ZstdWriter {
    exp: Expander<NamedTempFile>,
    dest: PathBuf,
}

impl ChunkWriter for ZstdWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.exp.write(data)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        let temp = self.exp.finish()?;
        store::commit(temp, &self.dest)
    }
}

/// One part of a split entry, written in place into the entry's partial file.
struct PartWriter<'x, 'b> {
    ex: &'x Extractor<'b>,
    c: usize,
    e: usize,
    file: DirectWriter,
    /// The entry's running hash, when every earlier part went through this run in order.
    hasher: Option<Hasher>,
}

impl ChunkWriter for PartWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<()> {
        let path = self.file.path().to_path_buf();
        self.file.finish()?.sync_data().at(&path)?;
        let complete = self.ex.record(self.c)?;
        let part = self.ex.bundle.manifest.chunks[self.c].part;
        let last = part as usize + 1 == self.ex.entry_chunks(self.e).len();
        if complete {
            // The running hash covers the whole entry only when this was its last part.
            return self.ex.finalize(self.e, self.hasher.filter(|_| last));
        }
        if let (Some(h), false, Ok(mut rolling)) = (self.hasher, last, self.ex.rolling.lock()) {
            rolling.insert(self.e, (part + 1, h));
        }
        Ok(())
    }
}
