//! The content-addressed blob store of an OCI image layout, and the one way airlift writes
//! files: blobs through [`BlobWriter`] (hashed while written, committed only on a match),
//! every other file through [`commit_file`].
//!
//! ```text
//! ROOT/
//!   oci-layout              {"imageLayoutVersion":"1.0.0"}
//!   index.json              images, by digest and ref name
//!   blobs/sha256/<hex>      every blob, named by the sha256 of its bytes
//!   files/<name>            files included in a bundle
//!   .airlift/               state, every path built by [`State`]:
//!     tmp/                  temp files (blob writers, commits)
//!     partial/<hex>         a fetch cut off, resumed by the next one
//!     partial/<id>.<entry>  a split entry's parts, written in place
//!     journal/<id>          what an unpack of bundle <id> committed
//!     push/<id>@<host>      what an unpack --to pushed
//!     lock, install.lock    the run lock; the registry installer's lock
//!     trust.json            rollback protection (see bundle::trust); accepted.json before it
//!     rebuilt/<volume>      data volumes an unpack rebuilt from parity, read, then removed
//! ```
//! This module is the only place that builds blob paths and state paths.

mod commit;
mod direct;
mod writer;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

pub use commit::{
    commit_file, purge_temps_in, purge_temps_under, sync_dir, temp_in, write_atomic, write_file, write_private, Batch,
    Commit, Pending, STALE_TEMP, TEMP_PREFIX,
};
pub use direct::{DirectReader, DirectWriter, Writeback};
pub use writer::{place_checked, BlobWriter, Written};

/// The name of the state directory under a store's root.
pub const STATE_DIR: &str = ".airlift";

/// A path under a root's `.airlift/` (see the drawing above).
#[derive(Debug, Clone, Copy)]
pub enum State<'a> {
    Tmp,
    /// Partial files: fetches cut off, split entries' parts.
    Partials,
    /// A fetch of this blob cut off.
    Partial(&'a Digest),
    /// Entry `.1`'s parts of bundle `.0`.
    EntryParts(&'a str, usize),
    Journals,
    /// The unpack journal of bundle `.0`.
    Journal(&'a str),
    /// What bundle `.0` pushed to registry host `.1` (made safe for a file name).
    Push(&'a str, &'a str),
    Lock,
    InstallLock,
    Trust,
    /// What an earlier airlift kept in place of `trust.json`.
    Accepted,
    /// Data volumes an unpack rebuilt from parity, until they are read.
    Rebuilt,
}

impl State<'_> {
    /// This path under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let dir = root.join(STATE_DIR);
        match self {
            State::Tmp => dir.join("tmp"),
            State::Partials => dir.join("partial"),
            State::Partial(d) => dir.join("partial").join(d.hex()),
            State::EntryParts(bundle, e) => dir.join("partial").join(format!("{bundle}.{e}")),
            State::Journals => dir.join("journal"),
            State::Journal(bundle) => dir.join("journal").join(bundle),
            State::Push(bundle, host) => dir.join("push").join(format!("{bundle}@{host}")),
            State::Lock => dir.join("lock"),
            State::InstallLock => dir.join("install.lock"),
            State::Trust => dir.join("trust.json"),
            State::Accepted => dir.join("accepted.json"),
            State::Rebuilt => dir.join("rebuilt"),
        }
    }
}

/// Where a blob lives under a layout root.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join("sha256").join(digest.hex())
}

/// The entries of `dir`; `None` when it is absent.
pub fn read_dir_if_present(dir: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(e) => Ok(Some(e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// A blob file found under a root's `blobs/sha256/`.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When its bytes were last written (a blob is committed once, so: when it came).
    pub modified: std::time::SystemTime,
}

/// The regular files of `root`'s `blobs/sha256/` named by a digest (temp and partial
/// files have other names); none when the directory is absent.
pub fn list_blobs(root: &Path) -> Result<Vec<StoredBlob>> {
    let dir = root.join("blobs").join("sha256");
    let Some(entries) = read_dir_if_present(&dir)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir)?;
        let Some(digest) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) else { continue };
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed since the listing (a concurrent gc): not a blob any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(entry.path(), e)),
        };
        if meta.is_file() {
            let modified = meta.modified().at(entry.path())?;
            out.push(StoredBlob { digest, size: meta.len(), modified });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Where temp files go: `State::Tmp` unless [`BlobStore::temps_in`] said otherwise.
    tmp: PathBuf,
    /// Bulk writes go around the page cache ([`DirectWriter`]) unless what is written is
    /// read back at once (a staging store whose blobs are uploaded next).
    direct: bool,
}

impl BlobStore {
    /// Open (creating if needed) a layout root for writing.
    pub fn create(root: &Path) -> Result<BlobStore> {
        let tmp = State::Tmp.under(root);
        for dir in [root.join("blobs").join("sha256"), tmp.clone()] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(BlobStore { root: root.to_path_buf(), tmp, direct: true })
    }

    /// This store's blobs are read back right after they are written: keep them in the
    /// page cache (measured: a 2 GiB push from a staging store written around it took
    /// 29.6 s, 23–26 s through it, the uploads otherwise reading every blob from disk).
    pub fn read_back_soon(mut self) -> BlobStore {
        self.direct = false;
        self
    }

    /// Put this handle's temp files in `dir` (on the store's filesystem): the registry
    /// server's, which an unpack's sweep of `State::Tmp` under its run lock must not reach.
    pub fn temps_in(mut self, dir: PathBuf) -> BlobStore {
        self.tmp = dir;
        self
    }

    /// Whether bulk writes into this store go around the page cache.
    pub fn direct_io(&self) -> bool {
        self.direct
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path under this store's `.airlift/`.
    pub fn state(&self, state: State) -> PathBuf {
        state.under(&self.root)
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }

    /// A committed blob of this digest and size exists (commits are atomic, so a file
    /// under its digest name was verified before it was renamed there).
    pub fn contains(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.path(digest)).map(|m| m.is_file() && m.len() == size).unwrap_or(false)
    }

    /// A temp file on the store's filesystem, removed unless committed.
    pub fn temp(&self) -> Result<NamedTempFile> {
        temp_in(&self.tmp)
    }

    /// A writer of blob `digest`, `size` bytes long.
    pub fn writer(&self, digest: &Digest, size: u64) -> Result<BlobWriter> {
        self.file_writer(self.path(digest), digest, size)
    }

    /// A writer of a file whose content is signed (`digest`, `size` bytes) going to `dest`
    /// instead of the blob store (an included file), through the store's temp files.
    pub fn file_writer(&self, dest: PathBuf, digest: &Digest, size: u64) -> Result<BlobWriter> {
        BlobWriter::new(self.temp()?, dest, digest, size, self.direct)
    }

    /// A writer of blob `digest` that continues what an earlier, cut-off writer kept
    /// ([`BlobWriter::keep`]) in `State::Partial`: those bytes are hashed first, and
    /// [`written`](BlobWriter::written) says how many there are. The file is locked while
    /// in use; a second process writing the same blob at the same time gets a fresh temp
    /// file of its own.
    pub fn resume(&self, digest: &Digest, size: u64) -> Result<BlobWriter> {
        let path = self.state(State::Partial(digest));
        let dir = self.state(State::Partials);
        fs::create_dir_all(&dir).at(&dir)?;
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        if !matches!(lock_exclusive(&file, &path, false), Ok(true)) {
            return self.writer(digest, size);
        }
        let temp_path = tempfile::TempPath::try_from_path(&path).at(&path)?;
        BlobWriter::resume(NamedTempFile::from_parts(file, temp_path), self.path(digest), digest, size, self.direct)
    }

    /// Store a small blob (a manifest, a config) held in memory, unless the store has it;
    /// whether it was written now. The bytes must be `digest`.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<bool> {
        if self.contains(digest, bytes.len() as u64) {
            return Ok(false);
        }
        let found = Digest::of(bytes);
        if &found != digest {
            return Err(crate::error::integrity(format!("blob {digest}: the bytes to store are {found}")));
        }
        let mut temp = self.temp()?;
        temp.write_all(bytes).at(temp.path())?;
        commit_file(temp, &self.path(digest), Commit::PUBLIC)?;
        Ok(true)
    }

    /// Make the finished file at `path` blob `digest` once its bytes are (`hashed`: their
    /// digest when the caller computed it while writing them, else hashed here); when the
    /// store has that blob already, or on any failure, the file stays where it is. On a
    /// mismatch `mismatch` words the error. The blob's size.
    pub fn adopt<E: From<Error>>(
        &self,
        path: &Path,
        digest: &Digest,
        hashed: Option<Digest>,
        mismatch: impl FnOnce(Written) -> E,
    ) -> Result<u64, E> {
        let written = writer::check(path, hashed)?;
        if !written.is(digest, None) {
            return Err(mismatch(written));
        }
        if !self.contains(digest, written.size) {
            commit::commit_in_place(path, &self.path(digest))?;
        }
        Ok(written.size)
    }

    /// Remove every temp file: with this store's run lock held no other run writes here
    /// (the registry's uploads have their own directory), so any is a killed run's.
    pub fn purge_temps(&self, _held: &RunLock) -> Result<()> {
        purge_temps_in(&self.tmp)
    }

    /// Remove the temp files nobody has written to for [`STALE_TEMP`], where several runs
    /// may share the store without a lock (the fetch cache of concurrent packs): a live
    /// run's temp files, written continually, stay.
    pub fn purge_stale_temps(&self) -> Result<()> {
        purge_temps_under(&self.tmp, STALE_TEMP, &|_| false).map(drop)
    }

    /// Take this store's run lock (`State::Lock`, flock), so that two unpacks into one
    /// destination run one after the other; `waiting` is told the holder's pid (as it
    /// wrote it) when the lock is taken. Released when the returned guard is dropped.
    pub fn lock_run(&self, waiting: impl FnOnce(Option<u32>)) -> Result<RunLock> {
        use std::io::{Read, Seek};
        let path = self.state(State::Lock);
        let mut file =
            fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        if !lock_exclusive(&file, &path, false)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            // The holder writes its pid just after it took the lock: it may not be there yet.
            waiting(holder.trim().parse::<u32>().ok());
            lock_exclusive(&file, &path, true)?;
        }
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        file.write_all(std::process::id().to_string().as_bytes()).at(&path)?;
        Ok(RunLock { _file: file })
    }
}

/// Take an exclusive `flock` on `file` (at `path`, for errors): with `wait`, block until
/// it is free; without, `Ok(false)` when another holds it. The lock goes with the
/// descriptor: dropped with the file, or when the process ends, killed or not.
pub fn lock_exclusive(file: &File, path: &Path, wait: bool) -> Result<bool> {
    use rustix::fs::FlockOperation;
    let op = if wait { FlockOperation::LockExclusive } else { FlockOperation::NonBlockingLockExclusive };
    flock_file(file, path, op, wait)
}

/// Take a shared `flock` on `file` (at `path`, for errors), waiting while another holds
/// it exclusively; released like [`lock_exclusive`]'s.
pub fn lock_shared(file: &File, path: &Path) -> Result<()> {
    flock_file(file, path, rustix::fs::FlockOperation::LockShared, true).map(drop)
}

fn flock_file(file: &File, path: &Path, op: rustix::fs::FlockOperation, wait: bool) -> Result<bool> {
    use rustix::fs::flock;
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => return Ok(false),
            Err(e) => return Err(Error::io(path, e.into())),
        }
    }
}

/// Held while one run writes into a store ([`BlobStore::lock_run`]).
pub struct RunLock {
    _file: File,
}

#[cfg(test)]
mod tests;
