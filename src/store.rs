//! The content-addressed blob store of an OCI image layout, and atomic file commits.
//!
//! ```text
//! ROOT/
//!   oci-layout              {"imageLayoutVersion":"1.0.0"}
//!   index.json              images, by digest and ref name
//!   blobs/sha256/<hex>      every blob, named by the sha256 of its bytes
//!   files/<name>            files included in a bundle
//!   .airlift/               unpack state: tmp/ (temp files), partial/, journal, accepted.json
//! ```
//! This module is the only place that builds blob paths.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::Digest;
use crate::error::{IoContext, Result};

pub const STATE_DIR: &str = ".airlift";

/// Where a blob lives under a layout root.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join("sha256").join(digest.hex())
}

pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Open (creating if needed) a layout root for writing.
    pub fn create(root: &Path) -> Result<BlobStore> {
        for dir in [root.join("blobs").join("sha256"), root.join(STATE_DIR).join("tmp")] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(BlobStore { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
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
        let dir = self.state_dir().join("tmp");
        temp_in(&dir)
    }

    /// Remove temp files left by a killed run.
    pub fn purge_temps(&self) -> Result<()> {
        purge_temps_in(&self.state_dir().join("tmp"))
    }
}

/// Make a finished temp file durable under `dest` (mode 0644): fsync, rename, fsync the
/// directory.
pub fn commit(temp: NamedTempFile, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    temp.as_file().set_permissions(fs::Permissions::from_mode(0o644)).at(temp.path())?;
    temp.as_file().sync_all().at(temp.path())?;
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    temp.persist(dest).map_err(|e| crate::error::Error::io(dest, e.error))?;
    sync_dir(dest)
}

/// Prefix of every temp file airlift creates beside its output.
pub const TEMP_PREFIX: &str = ".airlift-tmp-";

/// A named temp file in `dir`, removed on drop unless committed.
pub fn temp_in(dir: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir).at(dir)
}

/// Remove temp files a killed run left in `dir` (only airlift's own, by their prefix).
pub fn purge_temps_in(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry.at(dir)?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

/// fsync the directory holding `path`, so a rename into it survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let d = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        File::open(d).and_then(|f| f.sync_all()).at(d)?;
    }
    Ok(())
}

/// Write a small file atomically: temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut temp = temp_in(dir)?;
    temp.write_all(bytes).at(temp.path())?;
    commit(temp, path)
}

/// Starts writeback of what a writer has written, every few MiB, so the fsync at commit
/// finds most data already on its way to disk and I/O overlaps hashing.
#[derive(Debug, Default)]
pub struct Writeback {
    from: u64,
}

const WRITEBACK_STEP: u64 = 8 << 20;

impl Writeback {
    /// `end` is the offset just past the bytes written so far.
    pub fn wrote(&mut self, file: &File, end: u64) {
        use std::os::unix::io::AsRawFd;
        if end < self.from {
            self.from = end;
        }
        if end - self.from >= WRITEBACK_STEP {
            // SAFETY: sync_file_range only reads its integer arguments; the descriptor
            // belongs to `file`, which is open for the duration of the call. It is a hint:
            // its result does not matter, the commit's fsync is what makes data durable.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.from as libc::off64_t,
                    (end - self.from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.from = end;
        }
    }
}
