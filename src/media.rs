//! Opening files that come from the media (the bundle directory: manifest, signatures,
//! `SHA256SUMS`, volumes). A file there is opened only if it is a regular file, checked on
//! the open descriptor (opened with `O_NONBLOCK`, so a FIFO or a device never blocks the
//! open), and read through a bound fitted to what it can legitimately be. Anything else
//! (a FIFO, a device such as `/dev/zero` behind a symlink, a directory, a file larger than
//! its kind can be) is a property of the media: an integrity failure naming the file.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{integrity, Error, IoContext, Result};

/// Open `path` for reading if it is a regular file; `Ok(None)` when it does not exist.
/// `what` names the file's role in errors ("the manifest", "volume 3", …).
pub fn open_regular(path: &Path, what: &str) -> Result<Option<File>> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kind = file.metadata().at(path)?.file_type();
    if kind.is_file() {
        return Ok(Some(file));
    }
    let is = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(integrity(format!("{}: {what} is {is}; airlift reads only regular files from the media", path.display())))
}

/// Read all of `path` (a regular file) if it holds at most `limit` bytes; `Ok(None)` when
/// it does not exist. More than `limit` is an integrity failure, found from the size
/// before reading and again while reading (a file that grows, or lies about its size,
/// is never read past the bound).
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_regular(path, what)? else { return Ok(None) };
    let len = file.metadata().at(path)?.len();
    let too_big = |n: u64| {
        integrity(format!("{}: {what} is {n} bytes or more, larger than the {limit} bytes it can be", path.display()))
    };
    if len > limit {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).at(path)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_bounded(&f, 5, "f").unwrap().unwrap(), b"12345");
        let e = read_bounded(&f, 4, "the thing").unwrap_err();
        assert!(matches!(e, Error::Integrity(_)), "{e}");
        assert!(e.to_string().contains("the thing is 5 bytes"), "{e}");
        assert!(read_bounded(&dir.path().join("none"), 5, "f").unwrap().is_none());
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_bounded(&fifo, 1 << 20, "the manifest").unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_bounded(&zero, 1 << 20, "SHA256SUMS").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(matches!(open_regular(dir.path(), "a volume").unwrap_err(), Error::Integrity(_)));
    }
}
