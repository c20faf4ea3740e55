//! The content-addressed blob store of an OCI image layout, and atomic file commits.
//!
//! ```text
//! ROOT/
//!   oci-layout              {"imageLayoutVersion":"1.0.0"}
//!   index.json              images, by digest and ref name
//!   blobs/sha256/<hex>      every blob, named by the sha256 of its bytes
//!   files/<name>            files included in a bundle
//!   .airlift/               unpack state: tmp/ (temp files), partial/, journal/, lock,
//!                           trust.json (rollback protection, see bundle::trust)
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
    /// Bulk writes go around the page cache ([`DirectWriter`]) unless what is written is
    /// read back at once (a staging store whose blobs are uploaded next).
    direct: bool,
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
        Ok(BlobStore { root: root.to_path_buf(), direct: true })
    }

    /// This store's blobs are read back right after they are written: keep them in the
    /// page cache (measured: a 2 GiB push from a staging store written around it took
    /// 29.6 s, 23–26 s through it, the uploads otherwise reading every blob from disk).
    pub fn read_back_soon(mut self) -> BlobStore {
        self.direct = false;
        self
    }

    /// Whether bulk writes into this store go around the page cache.
    pub fn direct_io(&self) -> bool {
        self.direct
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

    /// Where blob `digest` is fetched into, and how many of its bytes are there already:
    /// `STATE/partial/HEX`, kept when a fetch is cut off (or killed) so the next one
    /// resumes where the data on disk ends. The file is locked while in use; a second
    /// process fetching the same blob at the same time gets a temp file of its own.
    /// Dropped without [`commit`], the file is removed (the fetcher keeps it with
    /// `disable_cleanup` when its bytes are worth resuming from).
    pub fn partial(&self, digest: &Digest) -> Result<(NamedTempFile, u64)> {
        let dir = self.state_dir().join("partial");
        fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join(digest.hex());
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        if !matches!(lock_exclusive(&file, &path, false), Ok(true)) {
            return Ok((self.temp()?, 0));
        }
        let len = file.metadata().at(&path)?.len();
        let temp_path = tempfile::TempPath::try_from_path(&path).at(&path)?;
        Ok((NamedTempFile::from_parts(file, temp_path), len))
    }

    /// Remove every temp file: with this store's run lock held no other run writes here
    /// (the registry's uploads have their own directory), so any is a killed run's.
    pub fn purge_temps(&self, _held: &RunLock) -> Result<()> {
        purge_temps_under(&self.state_dir().join("tmp"), std::time::Duration::ZERO, &|_| false).map(drop)
    }

    /// Remove the temp files nobody has written to for [`STALE_TEMP`], where several runs
    /// may share the store without a lock (the fetch cache of concurrent packs): a live
    /// run's temp files, written continually, stay.
    pub fn purge_stale_temps(&self) -> Result<()> {
        purge_temps_under(&self.state_dir().join("tmp"), STALE_TEMP, &|_| false).map(drop)
    }

    /// Take this store's run lock (`STATE/lock`, flock), so that two unpacks into one
    /// destination run one after the other; `waiting` is told the holder's pid (as it
    /// wrote it) when the lock is taken. Released when the returned guard is dropped.
    pub fn lock_run(&self, waiting: impl FnOnce(Option<u32>)) -> Result<RunLock> {
        use std::io::{Read, Seek};
        let path = self.state_dir().join("lock");
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
    use std::os::unix::io::AsRawFd;
    let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    loop {
        // SAFETY: flock only acts on the descriptor `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock if !wait => return Ok(false),
            _ => return Err(crate::error::Error::io(path, e)),
        }
    }
}

/// How long a temp file must have been left untouched before a new run removes it.
pub const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Held while one run writes into a store ([`BlobStore::lock_run`]).
pub struct RunLock {
    _file: File,
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
    purge_temps_under(dir, std::time::Duration::ZERO, &|_| false).map(drop)
}

/// The one temp-file sweep: remove airlift's temp files ([`TEMP_PREFIX`]) in `dir` that
/// nothing touched for `grace` or longer (`Duration::ZERO`: every one), going down into
/// the subdirectories `descend` accepts. A missing `dir` holds none. Returns how many went.
pub fn purge_temps_under(dir: &Path, grace: std::time::Duration, descend: &dyn Fn(&Path) -> bool) -> Result<usize> {
    let now = std::time::SystemTime::now();
    let mut purged = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::error::Error::io(&dir, e)),
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
                    Err(e) => return Err(crate::error::Error::io(&path, e)),
                }
            }
        }
    }
    Ok(purged)
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

/// Write a small file only its owner may read (credentials), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).at(dir)?;
    let mut temp = temp_in(dir)?;
    temp.as_file().set_permissions(fs::Permissions::from_mode(0o600)).at(temp.path())?;
    temp.write_all(bytes).at(temp.path())?;
    temp.as_file().sync_all().at(temp.path())?;
    temp.persist(path).map_err(|e| crate::error::Error::io(path, e.error))?;
    sync_dir(path)
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

/// Sequential writing around the page cache (`O_DIRECT`) where the filesystem allows it.
/// Everything airlift writes in bulk is fsynced at once and rarely read back soon, and
/// copying it through the page cache costs several times the CPU of the transfer itself
/// (measured on the test VM: 1 GiB buffered + fsync 1.9–3.9 s, 1.5–3.5 s of it system
/// time; direct 0.75 s, 0.3 s system). Data is staged in an aligned buffer and the
/// aligned middle is written directly; an unaligned head or tail goes through the page
/// cache. Where direct I/O is refused (tmpfs, some network filesystems) every write is
/// a plain one. The writer has its own file description (a temp file is reopened), so
/// its flags touch no other handle; the caller makes the data durable (fsync) after
/// [`finish`](DirectWriter::finish).
pub struct DirectWriter {
    file: File,
    path: PathBuf,
    /// File offset of the first staged byte.
    pos: u64,
    /// `DIRECT_BUF + DIRECT_ALIGN` bytes; `base` is the first aligned index.
    buf: Vec<u8>,
    base: usize,
    /// Staged bytes are `buf[base + skew..][..len]`, so that a byte at an aligned file
    /// offset sits at an aligned address.
    skew: usize,
    len: usize,
    direct: bool,
}

const DIRECT_ALIGN: usize = 4096;
const DIRECT_BUF: usize = 2 << 20;

impl DirectWriter {
    /// Write `temp` from its start, through a handle of its own; around the page cache
    /// when `direct`.
    pub fn temp(temp: &NamedTempFile, direct: bool) -> Result<DirectWriter> {
        let file = temp.reopen().at(temp.path())?;
        Ok(DirectWriter::at(file, temp.path(), 0, direct))
    }

    /// Write `file` (open for writing, named `path`) from `offset` on; around the page
    /// cache when `direct`.
    pub fn at(file: File, path: &Path, offset: u64, direct: bool) -> DirectWriter {
        let buf = vec![0u8; DIRECT_BUF + DIRECT_ALIGN];
        let base = buf.as_ptr().align_offset(DIRECT_ALIGN);
        let skew = (offset % DIRECT_ALIGN as u64) as usize;
        let mut w =
            DirectWriter { file, path: path.to_path_buf(), pos: offset, buf, base, skew, len: 0, direct: false };
        w.direct = direct && w.set_direct(true);
        w
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Turn `O_DIRECT` on or off; whether it is now on.
    fn set_direct(&self, on: bool) -> bool {
        use std::os::unix::io::AsRawFd;
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl F_GETFL/F_SETFL only reads and sets the status flags of `fd`,
        // which `self.file` keeps open for the duration of the calls.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 {
                return false;
            }
            let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
            libc::fcntl(fd, libc::F_SETFL, flags) == 0 && on
        }
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let at = self.skew + self.len;
            let n = data.len().min(DIRECT_BUF - at);
            self.buf[self.base + at..][..n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.skew + self.len == DIRECT_BUF {
                self.flush(false)?;
            }
        }
        Ok(())
    }

    /// Write what is staged: an unaligned head through the page cache, the aligned middle
    /// directly; the tail too when `last`, else it stays staged.
    fn flush(&mut self, last: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let start = self.base + self.skew;
        let head = if self.skew == 0 { 0 } else { self.len.min(DIRECT_ALIGN - self.skew) };
        let body = head + (self.len - head) / DIRECT_ALIGN * DIRECT_ALIGN;
        if head > 0 {
            self.plain_write(start, head, self.pos)?;
        }
        if body > head {
            let data = &self.buf[start + head..start + body];
            match self.file.write_all_at(data, self.pos + head as u64) {
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    // Refused after all: from here on, plain writes.
                    self.direct = self.set_direct(false);
                    self.file.write_all_at(data, self.pos + head as u64).at(&self.path)?;
                }
                other => other.at(&self.path)?,
            }
        }
        let tail = self.len - body;
        if last {
            if tail > 0 {
                self.plain_write(start + body, tail, self.pos + body as u64)?;
            }
            self.pos += self.len as u64;
            self.len = 0;
        } else {
            self.buf.copy_within(start + body..start + self.len, self.base);
            self.pos += body as u64;
            self.len = tail;
        }
        self.skew = (self.pos % DIRECT_ALIGN as u64) as usize;
        Ok(())
    }

    /// Write `len` staged bytes from `buf[from..]` at `offset` through the page cache.
    fn plain_write(&mut self, from: usize, len: usize, offset: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let was_direct = self.direct;
        if was_direct {
            self.set_direct(false);
        }
        self.file.write_all_at(&self.buf[from..from + len], offset).at(&self.path)?;
        if was_direct {
            self.direct = self.set_direct(true);
        }
        Ok(())
    }

    /// Drop everything written so far and start again at offset 0.
    pub fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).at(&self.path)?;
        self.pos = 0;
        self.skew = 0;
        self.len = 0;
        Ok(())
    }

    /// Write the rest; the file, for the caller to make durable.
    pub fn finish(mut self) -> Result<File> {
        self.flush(true)?;
        Ok(self.file)
    }
}

/// Reading a file from start to end around the page cache (`O_DIRECT`), for the same
/// reason as [`DirectWriter`]: bulk data read once. Falls back to plain reads where the
/// filesystem refuses direct I/O.
pub struct DirectReader {
    file: File,
    /// `DIRECT_BUF + DIRECT_ALIGN` bytes; `base` is the first aligned index.
    buf: Vec<u8>,
    base: usize,
    /// Unread bytes are `buf[base + at..base + end]`.
    at: usize,
    end: usize,
    direct: bool,
}

impl DirectReader {
    pub fn open(path: &Path) -> Result<DirectReader> {
        use std::os::unix::fs::OpenOptionsExt;
        let (file, direct) = match fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (File::open(path).at(path)?, false),
            Err(e) => return Err(crate::error::Error::io(path, e)),
        };
        let buf = vec![0u8; DIRECT_BUF + DIRECT_ALIGN];
        let base = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Ok(DirectReader { file, buf, base, at: 0, end: 0, direct })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        use std::io::Read;
        let space = &mut self.buf[self.base..self.base + DIRECT_BUF];
        let n = match self.file.read(space) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                // Refused after all (reads stay aligned, so nothing was read): plain reads.
                let fd = std::os::unix::io::AsRawFd::as_raw_fd(&self.file);
                // SAFETY: fcntl F_GETFL/F_SETFL only changes the status flags of `fd`,
                // which `self.file` keeps open for the duration of the calls.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) != 0 {
                        return Err(e);
                    }
                }
                self.direct = false;
                self.file.read(space)?
            }
            other => other?,
        };
        self.at = 0;
        self.end = n;
        Ok(())
    }
}

impl std::io::Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.end {
            self.fill()?;
        }
        let n = out.len().min(self.end - self.at);
        out[..n].copy_from_slice(&self.buf[self.base + self.at..][..n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod direct_tests {
    use super::*;

    /// Every start offset and write pattern gives the same bytes as plain writes.
    #[test]
    fn direct_writes_land_where_plain_ones_would() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> =
            (0..(DIRECT_BUF * 2 + 12345) as u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        for (offset, direct) in
            [0u64, 1, 511, 4096, 4097, 3 * 4096 - 7].into_iter().flat_map(|o| [(o, true), (o, false)])
        {
            for step in [1usize, 4096, 65536 + 3, DIRECT_BUF] {
                let path = dir.path().join(format!("f{offset}-{step}-{direct}"));
                std::fs::write(&path, vec![0xAAu8; offset as usize]).unwrap();
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                let mut w = DirectWriter::at(file, &path, offset, direct);
                let part = if step == 1 { &data[..10000] } else { &data[..] };
                for piece in part.chunks(step) {
                    w.write_all(piece).unwrap();
                }
                w.finish().unwrap();
                let got = std::fs::read(&path).unwrap();
                assert_eq!(got.len(), offset as usize + part.len(), "offset {offset} step {step}");
                assert!(got[..offset as usize].iter().all(|&b| b == 0xAA));
                assert!(got[offset as usize..] == *part, "offset {offset} step {step}");
            }
        }
    }

    #[test]
    fn direct_reads_give_the_file() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 4096, DIRECT_BUF, DIRECT_BUF * 2 + 777] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("r{len}"));
            std::fs::write(&path, &data).unwrap();
            let mut got = Vec::new();
            DirectReader::open(&path).unwrap().read_to_end(&mut got).unwrap();
            assert!(got == data, "length {len}");
        }
    }

    /// Without a lock, a fresh temp file (a concurrent run's, in flight) survives a purge
    /// and one left untouched for longer than [`STALE_TEMP`] does not; under the run lock
    /// every temp file goes.
    #[test]
    fn purges_keep_what_a_live_run_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::create(dir.path()).unwrap();
        let fresh = store.temp().unwrap().into_temp_path().keep().unwrap();
        let stale = store.temp().unwrap().into_temp_path().keep().unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMP - std::time::Duration::from_secs(60);
        let f = File::options().write(true).open(&stale).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(old)).unwrap();
        store.purge_stale_temps().unwrap();
        assert!(fresh.exists(), "a temp file in use was purged");
        assert!(!stale.exists(), "a stale temp file was kept");
        let lock = store.lock_run(|_| panic!("nobody holds the lock")).unwrap();
        store.purge_temps(&lock).unwrap();
        assert!(!fresh.exists(), "under the run lock every temp file is a leftover");
    }

    #[test]
    fn the_run_lock_makes_a_second_run_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::create(dir.path()).unwrap();
        let first = store.lock_run(|_| panic!("nobody holds the lock yet")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let store = BlobStore::create(&root).unwrap();
            let _lock = store.lock_run(|holder| tx.send(holder).unwrap()).unwrap();
        });
        let holder = rx.recv().unwrap();
        assert_eq!(holder, Some(std::process::id()));
        assert!(!second.is_finished(), "the second run did not wait");
        drop(first);
        second.join().unwrap();
    }

    #[test]
    fn reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let temp = temp_in(dir.path()).unwrap();
        let mut w = DirectWriter::temp(&temp, true).unwrap();
        w.write_all(&vec![1u8; DIRECT_BUF + 10]).unwrap();
        w.reset().unwrap();
        w.write_all(b"fresh").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(temp.path()).unwrap(), b"fresh");
    }
}
