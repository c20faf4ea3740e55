//! Atomic file commits: every file airlift writes is a temp file made durable (fsync) and
//! renamed into place, then its directory fsynced ([`commit_file`], or many at once with
//! a [`Batch`]); and the one sweep of temp files a killed run left behind.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::NamedTempFile;

use crate::error::{Error, IoContext, Result};

/// Prefix of every temp file airlift creates beside its output.
pub const TEMP_PREFIX: &str = ".airlift-tmp-";

/// How long a temp file must have been left untouched before a new run removes it.
pub const STALE_TEMP: Duration = Duration::from_secs(3600);

/// How [`commit_file`] puts a file in place: its mode, and whether it may replace a file
/// already there.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    mode: u32,
    replace: bool,
}

impl Commit {
    /// Readable by everyone (0644), replacing what is there.
    pub const PUBLIC: Commit = Commit { mode: 0o644, replace: true };
    /// Readable only by its owner (0600: credentials, secret keys), replacing what is there.
    pub const PRIVATE: Commit = Commit { mode: 0o600, replace: true };

    /// With `mode`, replacing what is there.
    pub fn mode(mode: u32) -> Commit {
        Commit { mode, replace: true }
    }

    /// Never replace an existing file: the commit fails with `AlreadyExists` instead (one
    /// created since the caller looked is caught here).
    pub fn no_clobber(self) -> Commit {
        Commit { replace: false, ..self }
    }
}

/// A named temp file in `dir`, removed on drop unless committed. Created 0600, so a secret
/// written into it is never readable by others.
pub fn temp_in(dir: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir).at(dir)
}

/// The one atomic commit: give the finished temp file its mode, fsync it, rename it to
/// `dest` (creating `dest`'s directory), fsync the directory. A crash at any point leaves
/// either the old file or the new one.
pub fn commit_file(temp: NamedTempFile, dest: &Path, how: Commit) -> Result<()> {
    make_durable(temp.as_file(), temp.path(), how.mode)?;
    create_parent(dest)?;
    let placed = if how.replace { temp.persist(dest) } else { temp.persist_noclobber(dest) };
    placed.map_err(|e| Error::io(dest, e.error))?;
    sync_dir(dest)
}

/// [`commit_file`] for a file that is not a temp file of ours (an upload's data, a split
/// entry's assembled parts): on failure it stays where it is, for its owner to keep or
/// remove.
pub(super) fn commit_in_place(path: &Path, dest: &Path) -> Result<()> {
    let file = File::open(path).at(path)?;
    make_durable(&file, path, Commit::PUBLIC.mode)?;
    create_parent(dest)?;
    fs::rename(path, dest).at(dest)?;
    sync_dir(dest)
}

fn make_durable(file: &File, path: &Path, mode: u32) -> Result<()> {
    file.set_permissions(fs::Permissions::from_mode(mode)).at(path)?;
    file.sync_all().at(path)
}

/// A finished, checked temp file waiting in a [`Batch`] to go to `dest`.
pub struct Pending {
    temp: NamedTempFile,
    dest: PathBuf,
}

impl Pending {
    pub(super) fn new(temp: NamedTempFile, dest: PathBuf) -> Pending {
        Pending { temp, dest }
    }
}

/// Files committed together, for a writer of many files (unpack), so that what records
/// them (a journal) syncs once for all: one `syncfs` first writes every file out at once
/// (one journal commit of the filesystem instead of one per file), then each is committed
/// as [`commit_file`] does — its fsync, now with nothing left to write, its rename, the
/// fsync of its directory. Until [`Batch::commit`] returns, none is known to be in place.
#[derive(Default)]
pub struct Batch {
    pending: Vec<Pending>,
}

impl Batch {
    pub fn add(&mut self, file: Pending) {
        self.pending.push(file);
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Make every file durable and put it in place.
    pub fn commit(self) -> Result<()> {
        let Some(first) = self.pending.first() else { return Ok(()) };
        // Every temp file is on the store's filesystem: one syncfs writes them all out.
        rustix::fs::syncfs(first.temp.as_file()).map_err(|e| Error::io(first.temp.path(), e.into()))?;
        self.pending.into_iter().try_for_each(|p| commit_file(p.temp, &p.dest, Commit::PUBLIC))
    }
}

fn create_parent(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    fs::create_dir_all(dir).at(dir)
}

/// fsync the directory holding `path`, so a rename into it (or a removal) survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// The directory a file is written in, `.` for a bare name.
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Write a small file atomically (temp file beside it, [`commit_file`]) as `how` says,
/// creating its directory.
pub fn write_file(path: &Path, bytes: &[u8], how: Commit) -> Result<()> {
    create_parent(path)?;
    let mut temp = temp_in(dir_of(path))?;
    temp.write_all(bytes).at(temp.path())?;
    commit_file(temp, path, how)
}

/// Write a small file atomically, readable by everyone, creating its directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, Commit::PUBLIC)
}

/// Write a small file only its owner may read (credentials), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, Commit::PRIVATE)
}

/// Remove temp files a killed run left in `dir` (only airlift's own, by their prefix).
pub fn purge_temps_in(dir: &Path) -> Result<()> {
    purge_temps_under(dir, Duration::ZERO, &|_| false).map(drop)
}

/// The one temp-file sweep: remove airlift's temp files ([`TEMP_PREFIX`]) in `dir` that
/// nothing touched for `grace` or longer (`Duration::ZERO`: every one), going down into
/// the subdirectories `descend` accepts. A missing `dir` holds none. Returns how many went.
pub fn purge_temps_under(dir: &Path, grace: Duration, descend: &dyn Fn(&Path) -> bool) -> Result<usize> {
    let now = std::time::SystemTime::now();
    let mut purged = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.at(&dir)?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if descend(&path) {
                    stack.push(path);
                }
                continue;
            }
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let idle = meta.modified().ok().and_then(|t| now.duration_since(t).ok());
            if grace.is_zero() || idle.is_some_and(|d| d >= grace) {
                match fs::remove_file(&path) {
                    Ok(()) => purged += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        }
    }
    Ok(purged)
}
