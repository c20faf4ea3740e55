//! `/v2/<name>/blobs/<digest>`: GET and HEAD (with `Range`), DELETE. Blobs are streamed
//! from disk in fixed-size reads: no blob is ever held whole in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::{blocking, empty, response, value, CONTENT_DIGEST};
use crate::digest::Digest;
use crate::error::IoContext;
use crate::oci::names::Repository;
use crate::registry::errors::{ApiError, Code};
use crate::registry::routes::App;

/// Bytes read from disk per step of a blob stream.
const READ_SIZE: usize = 256 << 10;

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
    let (size, file) = blocking(move || {
        let size = app
            .storage
            .blob_size(&repo, &d)?
            .ok_or_else(|| ApiError::new(Code::BlobUnknown, format!("blob {d} is not known")))?;
        let file = if head {
            None
        } else {
            let path = app.storage.blob_path(&d);
            Some(File::open(&path).at(&path)?)
        };
        Ok((size, file))
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

/// `len` bytes of `file` from `start`, read on the blocking pool in fixed-size steps. A
/// file shorter than expected ends the stream with an error (the client sees a
/// truncated body, never wrong bytes).
fn stream(file: File, start: u64, len: u64) -> Body {
    let file = Arc::new(file);
    let state = (file, start, len);
    let s = futures_util::stream::unfold(state, |(file, pos, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(READ_SIZE as u64) as usize;
        let f = Arc::clone(&file);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match f.read_at(&mut buf[filled..], pos + filled as u64) {
                    Ok(0) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "blob shorter than its size",
                        ))
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(buf) => {
                let n = buf.len() as u64;
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (file, pos + n, left - n)))
            }
            Err(e) => Some((Err(e), (file, pos, 0))),
        }
    });
    Body::from_stream(s)
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
