//! Free space, checked before a long write: what a command will write is added up per
//! filesystem (the `st_dev` of the nearest existing ancestor of each directory it
//! writes to, so a cache and a bundle on one disk add up), with each file's last block
//! counted whole, and compared with what statvfs says an unprivileged writer may still
//! use (`f_bavail * f_frsize`) less a reserve. Every short filesystem is named in one
//! [`Shortage`] error (exit 2), before anything is written.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::size::human;

/// Room kept free on every filesystem for what the estimates leave out (journals,
/// directories, `index.json`, the manifest and its signatures, the rollback record):
/// 1% of the filesystem, at least 64 KiB and at most 64 MiB.
const RESERVE_MIN: u64 = 64 << 10;
const RESERVE_MAX: u64 = 64 << 20;

/// What will be written, per filesystem.
#[derive(Default)]
pub struct Needs {
    filesystems: Vec<Filesystem>,
    /// Directories already looked up, with their filesystem's index.
    dirs: Vec<(PathBuf, usize)>,
}

struct Filesystem {
    dev: u64,
    mount: PathBuf,
    /// `f_frsize`: a file takes a whole number of these.
    block: u64,
    available: u64,
    reserve: u64,
    needed: u64,
    what: Vec<Written>,
}

/// What will be written into one directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub what: Vec<String>,
}

/// A filesystem without room for what would be written to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Short {
    /// Its mount point.
    pub filesystem: PathBuf,
    /// Bytes that would be written there.
    pub needed: u64,
    /// Bytes statvfs says are free for an unprivileged writer.
    pub available: u64,
    /// Bytes kept free on top of `needed`.
    pub reserve: u64,
    /// What would be written there, by directory.
    pub what: Vec<Written>,
}

/// Every filesystem without room.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shortage {
    pub filesystems: Vec<Short>,
}

impl Shortage {
    /// One line per short filesystem: where, needed and available, human and exact.
    pub fn lines(&self) -> Vec<String> {
        self.filesystems
            .iter()
            .map(|s| {
                format!(
                    "{}: needs {} ({} bytes) + {} reserve, {} ({} bytes) available; for {}",
                    s.filesystem.display(),
                    human(s.needed),
                    s.needed,
                    human(s.reserve),
                    human(s.available),
                    s.available,
                    s.what
                        .iter()
                        .map(|w| format!("{} in {}", w.what.join(", "), w.dir.display()))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
            .collect()
    }

    /// What the error's `hint:` says.
    pub const HINT: &'static str =
        "make room or write elsewhere, then run again (what is already there is not written again); \
         --no-space-check starts anyway (a full disk then stops the run, and a rerun resumes)";
}

impl Needs {
    pub fn new() -> Needs {
        Needs::default()
    }

    /// Count `files` files of `bytes` in all, to be written under `dir` (which need not
    /// exist yet); `what` says what they are. Nothing to write is not looked up.
    pub fn add(&mut self, dir: &Path, what: &str, bytes: u64, files: u64) -> Result<()> {
        if bytes == 0 && files == 0 {
            return Ok(());
        }
        let fs = self.filesystem(dir)?;
        let fs = &mut self.filesystems[fs];
        // A file takes whole blocks: at most one block more than its bytes.
        fs.needed = fs.needed.saturating_add(bytes).saturating_add(files.saturating_mul(fs.block - 1));
        match fs.what.iter_mut().find(|w| w.dir == dir) {
            Some(w) if w.what.iter().any(|x| x == what) => {}
            Some(w) => w.what.push(what.to_string()),
            None => fs.what.push(Written { dir: dir.to_path_buf(), what: vec![what.to_string()] }),
        }
        Ok(())
    }

    /// Refuse when any filesystem lacks room for what was added to it plus its reserve.
    pub fn check(&self) -> Result<()> {
        let filesystems: Vec<Short> = self
            .filesystems
            .iter()
            .filter(|fs| fs.needed > 0 && fs.needed.saturating_add(fs.reserve) > fs.available)
            .map(|fs| Short {
                filesystem: fs.mount.clone(),
                needed: fs.needed,
                available: fs.available,
                reserve: fs.reserve,
                what: fs.what.clone(),
            })
            .collect();
        if filesystems.is_empty() {
            return Ok(());
        }
        Err(Error::NoSpace(Box::new(Shortage { filesystems })))
    }

    /// The index of `dir`'s filesystem, looked up (stat, statvfs) the first time.
    fn filesystem(&mut self, dir: &Path) -> Result<usize> {
        if let Some((_, i)) = self.dirs.iter().find(|(d, _)| d == dir) {
            return Ok(*i);
        }
        let existing = nearest_existing(dir)?;
        let dev = std::fs::metadata(&existing).map_err(|e| Error::io(&existing, e))?.dev();
        let index = match self.filesystems.iter().position(|fs| fs.dev == dev) {
            Some(i) => i,
            None => {
                let (available, size, block) = statvfs(&existing)?;
                self.filesystems.push(Filesystem {
                    dev,
                    mount: mount_point(&existing, dev),
                    block,
                    available,
                    reserve: (size / 100).clamp(RESERVE_MIN, RESERVE_MAX),
                    needed: 0,
                    what: Vec::new(),
                });
                self.filesystems.len() - 1
            }
        };
        self.dirs.push((dir.to_path_buf(), index));
        Ok(index)
    }
}

/// What an unprivileged writer may still use on the filesystem of `dir`, and its size,
/// in bytes.
pub fn available(dir: &Path) -> Result<(u64, u64)> {
    let (available, size, _) = statvfs(dir)?;
    Ok((available, size))
}

/// Available bytes, size and block size of the filesystem of `dir` (which exists).
fn statvfs(dir: &Path) -> Result<(u64, u64, u64)> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| Error::io(dir, e.into()))?;
    let block = vfs.f_frsize.max(1);
    Ok((vfs.f_bavail.saturating_mul(block), vfs.f_blocks.saturating_mul(block), block))
}

/// `dir`, or its nearest ancestor that exists, made absolute with symbolic links resolved.
fn nearest_existing(dir: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    for ancestor in absolute.ancestors() {
        match std::fs::canonicalize(ancestor) {
            Ok(found) => return Ok(found),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(ancestor, e)),
        }
    }
    Ok(PathBuf::from("/"))
}

/// The topmost directory above `existing` (canonical) on the filesystem `dev`.
fn mount_point(existing: &Path, dev: u64) -> PathBuf {
    let mut mount = existing;
    while let Some(parent) = mount.parent() {
        if std::fs::metadata(parent).map_or(true, |m| m.dev() != dev) {
            break;
        }
        mount = parent;
    }
    mount.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_on_one_filesystem_add_up_and_missing_ones_count_where_they_will_be() {
        let dir = tempfile::tempdir().unwrap();
        let mut needs = Needs::new();
        needs.add(dir.path(), "volumes", 1000, 1).unwrap();
        needs.add(&dir.path().join("not/yet/there"), "blobs", 2000, 2).unwrap();
        assert_eq!(needs.filesystems.len(), 1, "one filesystem");
        let fs = &needs.filesystems[0];
        assert_eq!(fs.needed, 3000 + 3 * (fs.block - 1), "bytes plus at most a block per file");
        assert_eq!(fs.what.len(), 2);
        assert!(fs.reserve >= RESERVE_MIN && fs.reserve <= RESERVE_MAX);
        assert!(needs.check().is_ok(), "3 KB fit in a temp dir");
    }

    #[test]
    fn a_shortage_names_the_filesystem_and_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut needs = Needs::new();
        needs.add(dir.path(), "bundle volumes", u64::MAX / 2, 1).unwrap();
        let Err(Error::NoSpace(shortage)) = needs.check() else { panic!("expected a shortage") };
        let [short] = &shortage.filesystems[..] else { panic!("one filesystem") };
        assert!(dir.path().canonicalize().unwrap().starts_with(&short.filesystem));
        let line = &shortage.lines()[0];
        assert!(line.contains(&format!("({} bytes)", short.needed)), "{line}");
        assert!(line.contains(&format!("({} bytes) available", short.available)), "{line}");
        assert!(line.ends_with(&format!("for bundle volumes in {}", dir.path().display())), "{line}");
    }

    #[test]
    fn nothing_to_write_is_not_looked_up() {
        let mut needs = Needs::new();
        needs.add(Path::new("/proc/self/fd/nothing/here"), "nothing", 0, 0).unwrap();
        assert!(needs.filesystems.is_empty());
        assert!(needs.check().is_ok());
    }
}
