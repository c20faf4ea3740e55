//! Content digests. Only sha256 is accepted: it is what OCI registries use and what the
//! bundle's chunk map records. A `Digest` is always validated; paths are built from it.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// Parse the 64 hex characters without the `sha256:` prefix.
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("'{hex}' is not 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Digest(out))
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex).map_err(|e| format!("bad digest '{s}': {e}")),
            Some((alg, _)) => Err(format!("unsupported digest algorithm '{alg}' in '{s}' (only sha256)")),
            None => Err(format!("bad digest '{s}': expected sha256:<hex>")),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// sha256 of a file's content.
pub fn file_digest(path: &std::path::Path) -> crate::error::Result<Digest> {
    file_digest_with(path, &mut vec![0u8; 1 << 20]).map(|(d, _)| d)
}

/// sha256 and length of a file's content, read through `buf` (a caller hashing many files
/// reuses one buffer).
pub fn file_digest_with(path: &std::path::Path, buf: &mut [u8]) -> crate::error::Result<(Digest, u64)> {
    use crate::error::IoContext;
    let mut file = std::fs::File::open(path).at(path)?;
    read_digest(&mut file, path, buf, &|_| {})
}

/// sha256 and length of what `reader` (reading `path`, for errors) gives until its end,
/// read through `buf`; `seen` hears of every piece's length as it is hashed (progress).
pub fn read_digest(
    reader: &mut dyn std::io::Read,
    path: &std::path::Path,
    buf: &mut [u8],
    seen: &dyn Fn(u64),
) -> crate::error::Result<(Digest, u64)> {
    use crate::error::IoContext;
    let mut hasher = Hasher::new();
    let mut len = 0u64;
    loop {
        let n = match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.at(path)?,
        };
        if n == 0 {
            return Ok((hasher.finish(), len));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
        seen(n as u64);
    }
}

/// So that a reader can be hashed with `std::io::copy`.
impl std::io::Write for Hasher {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.update(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sha256 computed on its own thread: buffers are handed over without copying, so
/// hashing overlaps the caller's reads and writes.
pub struct ThreadedHasher {
    tx: Option<std::sync::mpsc::SyncSender<std::sync::Arc<Vec<u8>>>>,
    handle: Option<std::thread::JoinHandle<Digest>>,
}

impl ThreadedHasher {
    pub fn new() -> ThreadedHasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(8);
        let handle = std::thread::spawn(move || {
            let mut h = Hasher::new();
            for buf in rx {
                h.update(&buf);
            }
            h.finish()
        });
        ThreadedHasher { tx: Some(tx), handle: Some(handle) }
    }

    pub fn update(&mut self, buf: std::sync::Arc<Vec<u8>>) {
        if let Some(tx) = &self.tx {
            // The thread only stops when `tx` is dropped, so a send cannot fail.
            let _ = tx.send(buf);
        }
    }

    pub fn finish(mut self) -> Digest {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(d)) => d,
            // A hashing thread cannot panic short of memory exhaustion; resume the panic.
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => Digest::of(b""),
        }
    }
}

impl Default for ThreadedHasher {
    fn default() -> Self {
        ThreadedHasher::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha512:00",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }
}
