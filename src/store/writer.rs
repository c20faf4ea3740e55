//! The store's one write path for content: [`BlobWriter`] writes into a temp file of the
//! store, hashing as it writes, and [`commit`](BlobWriter::commit) puts the file in place
//! only when its digest and size are the ones asked for; [`place_checked`] (and
//! `BlobStore::adopt`) does the same for a file written by other means (a split entry's
//! parts; an upload session's data).

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::commit::{commit_file, commit_in_place, Commit, Pending};
use super::direct::{DirectReader, DirectWriter};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// What was written: the digest and length of the bytes. A mismatch at a commit is
/// reported with it (each caller words its own error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub digest: Digest,
    pub size: u64,
}

impl Written {
    /// Whether this is `digest`, `size` bytes long when a size is given.
    pub fn is(&self, digest: &Digest, size: Option<u64>) -> bool {
        &self.digest == digest && size.map_or(true, |s| s == self.size)
    }
}

/// A blob (or signed file) being written: bytes go to a temp file in the store, around the
/// page cache when the store writes that way, and are hashed on the way. Dropped without
/// a commit, the temp file is removed.
pub struct BlobWriter {
    temp: NamedTempFile,
    file: DirectWriter,
    dest: PathBuf,
    digest: Digest,
    size: u64,
    /// `None` when the caller checks the bytes itself ([`BlobWriter::hashed_by_caller`]).
    hasher: Option<Hasher>,
    written: u64,
}

impl BlobWriter {
    /// Write `temp` from its start into `dest` as `digest` of `size` bytes.
    pub(super) fn new(temp: NamedTempFile, dest: PathBuf, digest: &Digest, size: u64, direct: bool) -> Result<Self> {
        let file = DirectWriter::temp(&temp, direct)?;
        Ok(BlobWriter { temp, file, dest, digest: digest.clone(), size, hasher: Some(Hasher::new()), written: 0 })
    }

    /// Continue `temp`, whose first bytes an earlier writer left: they are hashed first
    /// (more than `size` of them: they are dropped).
    pub(super) fn resume(temp: NamedTempFile, dest: PathBuf, digest: &Digest, size: u64, direct: bool) -> Result<Self> {
        let on_disk = temp.as_file().metadata().at(temp.path())?.len();
        let mut hasher = Hasher::new();
        let mut written = 0;
        if on_disk > size {
            temp.as_file().set_len(0).at(temp.path())?;
        } else if on_disk > 0 {
            std::io::copy(&mut DirectReader::open(temp.path())?, &mut hasher).at(temp.path())?;
            written = on_disk;
        }
        let file = DirectWriter::at(temp.reopen().at(temp.path())?, temp.path(), written, direct);
        Ok(BlobWriter { temp, file, dest, digest: digest.clone(), size, hasher: Some(hasher), written })
    }

    /// The caller hashes exactly these bytes itself and commits only when they matched (the
    /// bundle reader checks every chunk, an expander its output): hashing them again here
    /// would only cost time. The commit still checks the size.
    pub fn hashed_by_caller(mut self) -> Self {
        self.hasher = None;
        self
    }

    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// How many bytes were written (resumed ones included).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the bytes so far are the whole blob: its size, and its digest.
    pub fn complete(&self) -> bool {
        self.written == self.size && self.hasher.as_ref().map_or(true, |h| h.clone().finish() == self.digest)
    }

    /// Drop everything written so far and start again.
    pub fn restart(&mut self) -> Result<()> {
        self.file.reset()?;
        self.hasher = self.hasher.as_ref().map(|_| Hasher::new());
        self.written = 0;
        Ok(())
    }

    /// Stop without committing, keeping what was written for a later [`resume`]
    /// (a fetch cut off).
    ///
    /// [`resume`]: super::BlobStore::resume
    pub fn keep(mut self) -> Result<()> {
        self.file.finish()?;
        self.temp.disable_cleanup(true);
        Ok(())
    }

    /// Put the blob in place when what was written is its digest and size; else remove it
    /// and return the error `mismatch` words from what was written.
    pub fn commit<E: From<Error>>(self, mismatch: impl FnOnce(Written) -> E) -> Result<(), E> {
        let (temp, dest) = self.checked(mismatch)?;
        Ok(commit_file(temp, &dest, Commit::PUBLIC)?)
    }

    /// [`commit`](BlobWriter::commit) as part of a [`Batch`](super::Batch): checked now,
    /// in place once the batch is committed.
    pub fn commit_later<E: From<Error>>(self, mismatch: impl FnOnce(Written) -> E) -> Result<Pending, E> {
        let (temp, dest) = self.checked(mismatch)?;
        Ok(Pending::new(temp, dest))
    }

    /// The finished temp file and its destination, when what was written is the blob.
    fn checked<E: From<Error>>(self, mismatch: impl FnOnce(Written) -> E) -> Result<(NamedTempFile, PathBuf), E> {
        self.file.finish()?;
        let digest = self.hasher.map_or_else(|| self.digest.clone(), Hasher::finish);
        let written = Written { digest, size: self.written };
        if !written.is(&self.digest, Some(self.size)) {
            return Err(mismatch(written));
        }
        Ok((self.temp, self.dest))
    }
}

impl std::io::Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Put the finished file `path` at `dest` when its bytes are `digest` (and `size` bytes,
/// when given): `hashed` is their digest when the caller computed it while writing them,
/// else they are hashed here. On a mismatch nothing moves and `mismatch` words the error;
/// on any failure the file stays at `path`.
pub fn place_checked<E: From<Error>>(
    path: &Path,
    dest: &Path,
    digest: &Digest,
    size: Option<u64>,
    hashed: Option<Digest>,
    mismatch: impl FnOnce(Written) -> E,
) -> Result<(), E> {
    let written = check(path, hashed)?;
    if !written.is(digest, size) {
        return Err(mismatch(written));
    }
    Ok(commit_in_place(path, dest)?)
}

/// The digest (`hashed`, or hashed now) and size of the file at `path`.
pub(super) fn check(path: &Path, hashed: Option<Digest>) -> Result<Written> {
    let digest = match hashed {
        Some(d) => d,
        None => crate::digest::file_digest(path)?,
    };
    let size = std::fs::metadata(path).at(path)?.len();
    Ok(Written { digest, size })
}
