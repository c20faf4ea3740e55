//! `/v2/<name>/blobs/<digest>`: GET and HEAD (with `Range`), DELETE. Blobs are streamed
//! from disk in fixed-size reads: no blob is ever held whole in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use tokio::task::JoinHandle;

use super::{blocking, empty, response, value, CONTENT_DIGEST};
use crate::digest::Digest;
use crate::oci::names::Repository;
use crate::registry::errors::{ApiError, Code};
use crate::registry::routes::App;

/// Bytes read from disk per step of a blob stream.
const READ_SIZE: usize = 256 << 10;
/// Idle read buffers kept for reuse (see [`Pool`]).
const POOL_KEEP: usize = 32;

/// A byte range of a blob, inclusive.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Interpret a `Range` header against a blob of `size` bytes. Only single ranges are
/// served; multiple ranges and other units are ignored (the whole blob is sent), as RFC
/// 9110 allows. An inverted range (`500-0`) or one past the end is unsatisfiable (416),
/// as the distribution spec asks.
pub fn parse_range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last b bytes.
        return match b.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(_) if size == 0 => Range::Unsatisfiable,
            Ok(n) => Range::Part(size.saturating_sub(n), size - 1),
            Err(_) => Range::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else { return Range::Whole };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            Ok(_) => return Range::Unsatisfiable,
            Err(_) => return Range::Whole,
        }
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Part(start, end.min(size - 1))
}

pub async fn get(
    app: Arc<App>,
    repo: Repository,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let d = digest.clone();
    // A blob whose size is not the one its link records is an error (500, logged): never
    // a short or long body a client might accept.
    let (size, file) = blocking(move || {
        let unknown = || ApiError::new(Code::BlobUnknown, format!("blob {d} is not known"));
        if head {
            Ok((app.storage.blob_size(&repo, &d)?.ok_or_else(unknown)?, None))
        } else {
            let (size, file) = app.storage.open_blob(&repo, &d)?.ok_or_else(unknown)?;
            Ok((size, Some(file)))
        }
    })
    .await?;
    let mut h = vec![
        (CONTENT_DIGEST, value(digest.to_string())),
        (header::ACCEPT_RANGES, value("bytes")),
        (header::ETAG, value(format!("\"{digest}\""))),
    ];
    let (status, start, len) = match parse_range(range_header.as_deref(), size) {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Part(s, e) => {
            h.push((header::CONTENT_RANGE, value(format!("bytes {s}-{e}/{size}"))));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        Range::Unsatisfiable => {
            return Err(ApiError::new(Code::BlobUnknown, format!("range not satisfiable: blob is {size} bytes"))
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::CONTENT_RANGE, value(format!("bytes */{size}"))))
        }
    };
    h.push((header::CONTENT_TYPE, value("application/octet-stream")));
    h.push((header::CONTENT_LENGTH, value(len.to_string())));
    let body = match file {
        Some(f) => stream(f, start, len),
        None => Body::empty(),
    };
    Ok(response(status, &h, body))
}

/// `len` bytes of `file` from `start`, read on the blocking pool in steps of
/// [`READ_SIZE`] into pooled buffers, one step ahead of what hyper is writing (the disk
/// read overlaps the TLS write). A file cut short while it is served ends the stream with
/// an error: hyper then closes the connection before the promised Content-Length, so the
/// client sees a failed transfer, never a short body.
fn stream(file: File, start: u64, len: u64) -> Body {
    let file = Arc::new(file);
    let first = read_step(&file, start, len);
    let state = (file, start, len, first);
    let s = futures_util::stream::unfold(state, |(file, pos, left, step)| async move {
        let step = step?;
        let read = step.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(filled) => {
                let n = filled.len as u64;
                let (pos, left) = (pos + n, left - n);
                let next = read_step(&file, pos, left);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from_owner(filled)), (file, pos, left, next)))
            }
            Err(e) => Some((Err(e), (file, pos, 0, None))),
        }
    });
    Body::from_stream(s)
}

/// Start reading the next step of a blob stream (none when nothing is left).
fn read_step(file: &Arc<File>, pos: u64, left: u64) -> Option<JoinHandle<std::io::Result<Filled>>> {
    if left == 0 {
        return None;
    }
    let want = left.min(READ_SIZE as u64) as usize;
    let f = Arc::clone(file);
    Some(tokio::task::spawn_blocking(move || {
        let mut filled = Filled { buf: POOL.take(), len: 0 };
        while filled.len < want {
            match f.read_at(&mut filled.buf[filled.len..want], pos + filled.len as u64) {
                Ok(0) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob shorter than its size"))
                }
                Ok(n) => filled.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }))
}

/// Read buffers of [`READ_SIZE`] bytes, reused by every blob stream: a fresh buffer per
/// step cost page faults and zeroing (each one an mmap, above the server's mmap
/// threshold) and an munmap. Memory stays flat by reuse: at most [`POOL_KEEP`] idle
/// buffers are kept, the rest are freed.
struct Pool(Mutex<Vec<Vec<u8>>>);

static POOL: Pool = Pool(Mutex::new(Vec::new()));

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.0.lock().ok().and_then(|mut idle| idle.pop()).unwrap_or_else(|| vec![0u8; READ_SIZE])
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut idle) = self.0.lock() {
            if idle.len() < POOL_KEEP {
                idle.push(buf);
            }
        }
    }
}

/// The first `len` bytes of a pooled buffer, handed to hyper as [`Bytes`]; the buffer
/// goes back to the pool once hyper has written them.
struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        POOL.give(std::mem::take(&mut self.buf));
    }
}

pub async fn delete(app: Arc<App>, repo: Repository, digest: Digest) -> Result<Response, ApiError> {
    blocking(move || Ok(app.storage.delete_blob(&repo, &digest)?)).await?;
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Range::Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Range::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Range::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Range::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Range::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Range::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=500-0"), 1000), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Range::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Range::Whole);
    }
}
