//! Bounded zstd expansion: a compressed entry must expand to exactly its signed size and
//! digest. Output past the declared size is refused as it is produced, so a crafted stream
//! can neither fill the disk nor the memory (the window is capped too).

use std::io::{Read, Write};

use crate::bundle::manifest::Entry;
use crate::digest::Hasher;
use crate::error::{integrity, Error, Result};

/// Most memory a zstd frame may ask for (2^24 = 16 MiB window); pack uses far less.
const WINDOW_LOG_MAX: u32 = 24;

/// Expanded bytes go to `out`, counted and hashed, never past the declared size.
struct Bounded<W: Write> {
    out: W,
    limit: u64,
    written: u64,
    hasher: Hasher,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other("output goes past the declared size"));
        }
        self.out.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Streaming decompression of one entry's stored bytes into `W`.
pub struct Expander<W: Write> {
    dec: zstd::stream::write::Decoder<'static, Bounded<W>>,
    entry: Entry,
}

impl<W: Write> Expander<W> {
    pub fn new(entry: &Entry, out: W) -> Result<Expander<W>> {
        let sink = Bounded { out, limit: entry.size, written: 0, hasher: Hasher::new() };
        let mut dec = zstd::stream::write::Decoder::new(sink).map_err(|e| error(entry, e))?;
        dec.window_log_max(WINDOW_LOG_MAX).map_err(|e| error(entry, e))?;
        Ok(Expander { dec, entry: entry.clone() })
    }

    pub fn write(&mut self, stored: &[u8]) -> Result<()> {
        self.dec.write_all(stored).map_err(|e| error(&self.entry, e))
    }

    /// The stream ended: it must have expanded to the declared size and digest.
    pub fn finish(mut self) -> Result<W> {
        self.dec.flush().map_err(|e| error(&self.entry, e))?;
        let sink = self.dec.into_inner();
        let digest = sink.hasher.finish();
        if sink.written != self.entry.size || digest != self.entry.digest {
            return Err(integrity(format!(
                "'{}' expands to {} bytes with {digest}; the signed manifest says {} bytes with {}",
                self.entry.path, sink.written, self.entry.size, self.entry.digest
            )));
        }
        Ok(sink.out)
    }
}

/// Expand a whole stored stream read from `source`.
pub fn expand<W: Write>(mut source: impl Read, entry: &Entry, out: W) -> Result<W> {
    let mut exp = Expander::new(entry, out)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(|e| error(entry, e))?;
        if n == 0 {
            return exp.finish();
        }
        exp.write(&buf[..n])?;
    }
}

fn error(entry: &Entry, detail: impl std::fmt::Display) -> Error {
    integrity(format!(
        "zstd stream of '{}' is invalid or expands past its declared size of {} bytes: {detail}",
        entry.path, entry.size
    ))
}
