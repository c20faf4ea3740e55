//! Unpacking into an OCI layout: chunks are verified by the reader, then written straight
//! to their final place. A whole entry goes to a temp file renamed into place, many at a
//! time (a [`Batch`]: one syncfs writes them all out, one journal append records them
//! once they are in place and durable); a split entry's parts are written at their
//! offsets into a partial file and journaled one by one. So a killed run resumes where it
//! stopped and volumes may come in any order.
//!
//! Nothing already on disk counts as done by its name or size alone: an entry this
//! bundle's journal did not commit (another bundle's blob, an earlier run's file, a file
//! someone edited) is hashed once per run against its signed digest, and removed to be
//! written again from the bundle when it differs.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::bundle::expand::{expand, Expander};
use crate::bundle::ids::{ChunkId, EntryId};
use crate::bundle::manifest::{Compression, Entry, EntryKind};
use crate::bundle::reader::{Action, Bundle, ChunkWriter, Sink};
use crate::digest::{Digest, Hasher};
use crate::error::{integrity, Error, IoContext, Result};
use crate::store::{self, Batch, BlobStore, BlobWriter, DirectWriter, Pending, State, Written};

pub struct Extractor<'b> {
    bundle: &'b Bundle,
    store: &'b BlobStore,
    /// Where included files go.
    files_dir: PathBuf,
    journal_path: PathBuf,
    /// Journal file and what it records, under one lock.
    journal: Mutex<Journal>,
    /// Entries found in place at start that this bundle's journal had not committed, and
    /// whose content matched their signed digest (hashed once, here).
    checked: HashSet<usize>,
    /// Paths of entries found in place at start whose content did not match: removed,
    /// to be written again from the bundle.
    damaged: Vec<(usize, String)>,
    /// Entries in place at start that this bundle's journal had committed (not hashed again).
    from_journal: usize,
    /// Running sha256 of split entries whose parts were written in order in this run:
    /// entry → (next part, hash so far). Saves re-reading the entry at commit.
    rolling: Mutex<HashMap<usize, (u32, Hasher)>>,
    /// Whole entries written and checked, waiting to be committed together (and then
    /// journaled): the batch and its entries.
    batch: Mutex<(Batch, Vec<usize>)>,
    /// The entries to write ([`Extractor::only`]); every entry when `None`.
    only: Option<HashSet<usize>>,
}

/// A batch of whole entries is committed once it holds this many (each keeps a file
/// descriptor open until then) or this many bytes, and at the end of every volume.
const BATCH_FILES: usize = 128;
const BATCH_BYTES: u64 = 1 << 30;

/// A bundle's journal: one line per committed part (`CHUNK SHA256`) or whole entry
/// (`entry ENTRY DIGEST`), appended and synced as they are committed.
#[derive(Default)]
struct Journal {
    file: Option<File>,
    chunks: HashSet<ChunkId>,
    entries: HashSet<usize>,
}

/// The blobs the unpack journals in `store` record as committed: what unpacks that are
/// running, or were cut off, have put in place and not yet registered (`airlift gc`
/// keeps them). Parts of split entries not yet assembled are not blobs yet.
pub fn journaled_blobs(store: &BlobStore) -> Result<Vec<Digest>> {
    let dir = store.state(State::Journals);
    let Some(entries) = store::read_dir_if_present(&dir)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.at(&dir)?.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            // Finished (removed) since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        for line in BufReader::new(file).lines() {
            // A torn last line (killed mid-append) names nothing.
            let Ok(line) = line else { break };
            if let ["entry", _, hex] = line.split(' ').collect::<Vec<_>>()[..] {
                out.extend(Digest::from_hex(hex).ok());
            }
        }
    }
    Ok(out)
}

impl<'b> Extractor<'b> {
    /// Load the journal of this bundle (if a previous run left one), check every entry
    /// already in place that it did not commit, and finish entries whose parts were all
    /// written before that run stopped.
    pub fn new(bundle: &'b Bundle, store: &'b BlobStore, files_dir: PathBuf) -> Result<Extractor<'b>> {
        Self::with(bundle, store, files_dir, None)
    }

    /// An extractor of `entries` only (`fsck --repair` restoring damaged blobs): what is in
    /// place of them is checked, and every other entry is left alone (its chunks skipped).
    pub fn only(
        bundle: &'b Bundle,
        store: &'b BlobStore,
        files_dir: PathBuf,
        entries: HashSet<usize>,
    ) -> Result<Extractor<'b>> {
        Self::with(bundle, store, files_dir, Some(entries))
    }

    fn with(
        bundle: &'b Bundle,
        store: &'b BlobStore,
        files_dir: PathBuf,
        only: Option<HashSet<usize>>,
    ) -> Result<Extractor<'b>> {
        for dir in [store.state(State::Journals), store.state(State::Partials)] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let journal_path = store.state(State::Journal(&bundle.manifest.id));
        let mut journal = Journal::default();
        if let Ok(file) = File::open(&journal_path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                // A torn last line (killed mid-append) simply does not count.
                let words: Vec<&str> = line.split(' ').collect();
                match words[..] {
                    [c, sha] => {
                        let Ok(c) = c.parse::<usize>() else { continue };
                        if bundle.manifest.chunks.get(c).is_some_and(|ch| ch.sha256.hex() == sha) {
                            journal.chunks.insert(ChunkId::new(c));
                        }
                    }
                    ["entry", e, digest] => {
                        let Ok(e) = e.parse::<usize>() else { continue };
                        if bundle.manifest.entries.get(e).is_some_and(|en| en.digest.hex() == digest) {
                            journal.entries.insert(e);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut ex = Extractor {
            bundle,
            store,
            files_dir,
            journal_path,
            journal: Mutex::new(journal),
            checked: HashSet::new(),
            damaged: Vec::new(),
            from_journal: 0,
            rolling: Mutex::default(),
            batch: Mutex::default(),
            only,
        };
        ex.check_in_place()?;
        for e in (0..bundle.manifest.entries.len()).filter(|&e| ex.wanted(e)) {
            if ex.entry_chunks(e).len() > 1 && ex.destination(e).is_some() && !ex.committed(e) && ex.all_parts_done(e) {
                ex.finalize(e, None)?;
            }
        }
        Ok(ex)
    }

    /// Whether entry `e` is one this extractor writes.
    fn wanted(&self, e: usize) -> bool {
        self.only.as_ref().map_or(true, |only| only.contains(&e))
    }

    fn entry(&self, e: usize) -> &Entry {
        &self.bundle.manifest.entries[e]
    }

    fn entry_chunks(&self, e: usize) -> &[ChunkId] {
        self.bundle.index.chunks_of(EntryId::new(e))
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

    /// Whether this bundle's journal committed entry `e` (whole, or every part).
    fn journaled(&self, e: usize) -> bool {
        match self.journal.lock() {
            Ok(j) => j.entries.contains(&e) || self.entry_chunks(e).iter().all(|c| j.chunks.contains(c)),
            Err(_) => false,
        }
    }

    /// Hash every entry found in place that this bundle's journal did not commit; keep
    /// those that match their signed digest, remove the others (and remember them).
    fn check_in_place(&mut self) -> Result<()> {
        // (entry, path, metadata) of what is in place and must be hashed.
        let mut suspects = Vec::new();
        for e in 0..self.bundle.manifest.entries.len() {
            if !self.wanted(e) {
                continue;
            }
            let Some(dest) = self.destination(e) else { continue };
            let Ok(meta) = fs::symlink_metadata(&dest) else { continue };
            if self.journaled(e) && meta.is_file() && meta.len() == self.entry(e).size {
                self.from_journal += 1;
                continue;
            }
            suspects.push((e, dest, meta));
        }
        // Hashing is the cost of a rerun: spread it over the cores.
        let good: Vec<std::sync::atomic::AtomicBool> =
            suspects.iter().map(|_| std::sync::atomic::AtomicBool::new(false)).collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        crate::workers::run(
            threads,
            suspects.len(),
            || Ok(()),
            |_, i| {
                let (e, dest, meta) = &suspects[i];
                let entry = self.entry(*e);
                if meta.is_file() && meta.len() == entry.size && crate::digest::file_digest(dest)? == entry.digest {
                    good[i].store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            },
        )?;
        for (i, (e, dest, meta)) in suspects.into_iter().enumerate() {
            if good[i].load(std::sync::atomic::Ordering::SeqCst) {
                self.checked.insert(e);
                continue;
            }
            // Content-addressed or signed: what is there is not what was signed.
            let entry = self.entry(e);
            if meta.is_dir() {
                return Err(integrity(format!(
                    "{} is a directory where the signed entry '{}' goes",
                    dest.display(),
                    entry.path
                )));
            }
            fs::remove_file(&dest).at(&dest)?;
            store::sync_dir(&dest)?;
            self.damaged.push((e, entry.path.clone()));
        }
        Ok(())
    }

    /// The entry is in place and its content is what was signed: committed by this
    /// bundle's journal (every commit hashed it first), or hashed at the start of this run.
    pub fn committed(&self, e: usize) -> bool {
        if self.destination(e).is_none() {
            return false;
        }
        if self.checked.contains(&e) {
            return true;
        }
        self.journaled(e) && self.destination(e).and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.is_file())
    }

    /// Entries found in place whose content did not match their signed digest (removed at
    /// start): (entry path, whether this run wrote it again).
    pub fn damaged(&self) -> Vec<(String, bool)> {
        self.damaged.iter().map(|(e, path)| (path.clone(), self.committed(*e))).collect()
    }

    /// What was already complete when this run started: (entries committed by this
    /// bundle's journal, entries found in place and checked against their digests now).
    pub fn already_complete(&self) -> (usize, usize) {
        (self.from_journal, self.checked.len())
    }

    fn all_parts_done(&self, e: usize) -> bool {
        match self.journal.lock() {
            Ok(j) => self.entry_chunks(e).iter().all(|c| j.chunks.contains(c)),
            Err(_) => false,
        }
    }

    fn partial_path(&self, e: usize) -> PathBuf {
        self.store.state(State::EntryParts(&self.bundle.manifest.id, e))
    }

    /// Append a line to the journal (synced).
    fn append(&self, guard: &mut Journal, line: &str) -> Result<()> {
        if guard.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.journal_path).at(&self.journal_path)?;
            guard.file = Some(f);
        }
        if let Some(f) = guard.file.as_mut() {
            f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).at(&self.journal_path)?;
        }
        Ok(())
    }

    /// Record a committed part; returns whether it completed its entry.
    fn record(&self, c: ChunkId) -> Result<bool> {
        let e = self.bundle.index.entry_of(c).index();
        let mut guard = self.journal.lock().map_err(|_| crate::error::usage("internal: journal lock poisoned"))?;
        self.append(&mut guard, &format!("{c} {}\n", self.bundle.manifest.chunk(c).sha256.hex()))?;
        guard.chunks.insert(c);
        Ok(self.entry_chunks(e).iter().all(|x| guard.chunks.contains(x)))
    }

    /// Add whole entry `e`, checked, to the batch; commit the batch when it is full.
    fn pend(&self, e: usize, file: Pending) -> Result<()> {
        let full = {
            let mut guard = self.batch.lock().map_err(|_| crate::error::usage("internal: batch lock poisoned"))?;
            let (batch, entries) = &mut *guard;
            batch.add(file);
            entries.push(e);
            let bytes: u64 = entries.iter().map(|&e| self.entry(e).size).sum();
            (batch.len() >= BATCH_FILES || bytes >= BATCH_BYTES).then(|| std::mem::take(&mut *guard))
        };
        match full {
            Some((batch, entries)) => self.commit_batch(batch, &entries),
            None => Ok(()),
        }
    }

    /// Commit the whole entries written so far (call at the end of a volume): until then
    /// they are neither in place nor journaled.
    pub fn flush(&self) -> Result<()> {
        let (batch, entries) = match self.batch.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(_) => return Err(crate::error::usage("internal: batch lock poisoned")),
        };
        self.commit_batch(batch, &entries)
    }

    /// Put a batch of whole entries in place, then journal them (one synced append).
    fn commit_batch(&self, batch: Batch, entries: &[usize]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit()?;
        let lines: String = entries.iter().map(|&e| format!("entry {e} {}\n", self.entry(e).digest.hex())).collect();
        let mut guard = self.journal.lock().map_err(|_| crate::error::usage("internal: journal lock poisoned"))?;
        self.append(&mut guard, &lines)?;
        guard.entries.extend(entries);
        Ok(())
    }

    /// Move a completely written split entry into place, once its whole content hashes to
    /// its digest (`hashed`: the running hash of all its parts, when this run has it).
    fn finalize(&self, e: usize, hashed: Option<Hasher>) -> Result<()> {
        let entry = self.entry(e);
        let partial = self.partial_path(e);
        let Some(dest) = self.destination(e) else { return Ok(()) };
        match entry.compression {
            Compression::None => {
                let hashed = hashed.map(Hasher::finish);
                let mut mismatched = false;
                let placed = store::place_checked(&partial, &dest, &entry.digest, Some(entry.size), hashed, |w| {
                    mismatched = true;
                    mismatch(entry, "assembled from its parts is")(w)
                });
                if mismatched {
                    self.start_over(e, &partial)?;
                }
                placed
            }
            Compression::Zstd => {
                let source = File::open(&partial).at(&partial)?;
                let out = self.store.file_writer(dest, &entry.digest, entry.size)?.hashed_by_caller();
                let expanded = expand(source, entry, out).and_then(|out| out.commit(mismatch(entry, "expands to")));
                if expanded.is_err() {
                    self.forget(e)?;
                }
                fs::remove_file(&partial).at(&partial)?;
                expanded
            }
        }
    }

    /// Start entry `e` over on the next run rather than trust its parts again.
    fn start_over(&self, e: usize, partial: &std::path::Path) -> Result<()> {
        self.forget(e)?;
        fs::remove_file(partial).at(partial)
    }

    /// Drop an entry's parts from the journal.
    fn forget(&self, e: usize) -> Result<()> {
        let mut guard = self.journal.lock().map_err(|_| crate::error::usage("internal: journal lock poisoned"))?;
        for c in self.entry_chunks(e) {
            guard.chunks.remove(c);
        }
        guard.entries.remove(&e);
        guard.file = None;
        let mut kept: Vec<ChunkId> = guard.chunks.iter().copied().collect();
        kept.sort_unstable();
        let mut text: String =
            kept.iter().map(|&c| format!("{c} {}\n", self.bundle.manifest.chunk(c).sha256.hex())).collect();
        let mut entries: Vec<usize> = guard.entries.iter().copied().collect();
        entries.sort_unstable();
        for e in entries {
            text.push_str(&format!("entry {e} {}\n", self.entry(e).digest.hex()));
        }
        store::write_atomic(&self.journal_path, text.as_bytes())
    }

    /// Drop the journal and partial files once every entry of the bundle is in place.
    pub fn cleanup(&self) -> Result<()> {
        if let Ok(mut guard) = self.journal.lock() {
            guard.file = None;
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
    fn action(&self, c: ChunkId) -> Action {
        let e = self.bundle.index.entry_of(c).index();
        if !self.wanted(e) {
            return Action::Skip;
        }
        if self.destination(e).is_none() {
            return Action::Check;
        }
        if self.committed(e) {
            return Action::Skip;
        }
        let done = self.journal.lock().map(|j| j.chunks.contains(&c)).unwrap_or(false);
        if done {
            Action::Skip
        } else {
            Action::Write
        }
    }

    fn open(&self, c: ChunkId) -> Result<Box<dyn ChunkWriter + '_>> {
        let e = self.bundle.index.entry_of(c).index();
        let entry = self.entry(e);
        let dest = self.destination(e).ok_or_else(|| crate::error::usage("internal: no destination"))?;
        if self.entry_chunks(e).len() > 1 {
            let path = self.partial_path(e);
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
            let offset = self.bundle.index.stored_offset(c);
            let part = self.bundle.manifest.chunk(c).part;
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
        // The reader checks every chunk (a whole raw entry's chunk hash is its digest) and the
        // expander its output, before either commits.
        let out = self.store.file_writer(dest, &entry.digest, entry.size)?.hashed_by_caller();
        Ok(match entry.compression {
            Compression::None => Box::new(WholeWriter { out, ex: self, e }),
            Compression::Zstd => Box::new(ZstdWriter { exp: Expander::new(entry, out)?, ex: self, e }),
        })
    }
}

/// A whole uncompressed entry: its chunk hash is its digest.
struct WholeWriter<'x, 'b> {
    out: BlobWriter,
    ex: &'x Extractor<'b>,
    e: usize,
}

impl ChunkWriter for WholeWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        let file = self.out.commit_later(mismatch(self.ex.entry(self.e), "is"))?;
        self.ex.pend(self.e, file)
    }
}

/// A whole compressed entry, expanded while it streams in.
struct ZstdWriter<'x, 'b> {
    exp: Expander<BlobWriter>,
    ex: &'x Extractor<'b>,
    e: usize,
}

impl ChunkWriter for ZstdWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.exp.write(data)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        let out = self.exp.finish()?;
        let file = out.commit_later(mismatch(self.ex.entry(self.e), "expands to"))?;
        self.ex.pend(self.e, file)
    }
}

/// The error when what was written for `entry` is not what was signed: "'PATH' `what`
/// N bytes with DIGEST; the signed manifest says …".
fn mismatch<'a>(entry: &'a Entry, what: &'a str) -> impl FnOnce(Written) -> Error + 'a {
    move |written| {
        integrity(format!(
            "'{}' {what} {} bytes with {}; the signed manifest says {} bytes with {}",
            entry.path, written.size, written.digest, entry.size, entry.digest
        ))
    }
}

/// One part of a split entry, written in place into the entry's partial file.
struct PartWriter<'x, 'b> {
    ex: &'x Extractor<'b>,
    c: ChunkId,
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
        let part = self.ex.bundle.manifest.chunk(self.c).part;
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
