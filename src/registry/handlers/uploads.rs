//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic with `?digest=`,
//! or cross-repository mount), `PATCH`/`PUT`/`GET`/`DELETE` on
//! `/v2/<name>/blobs/uploads/<id>`.
//!
//! Bodies stream into the session's data file through a fixed-size buffer, hashed on
//! the way; the running hash is kept between requests so closing a session does not
//! re-read it (after a restart, it does). A request that fails midway cuts the data back
//! to where it started, so a session is always at a request boundary.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;

use super::{blocking, empty, value, CONTENT_DIGEST, UPLOAD_UUID};
use crate::digest::{Digest, Hasher};
use crate::error::IoContext;
use crate::oci::names::Repository;
use crate::registry::errors::{ApiError, Code};
use crate::registry::names::UploadId;
use crate::registry::routes::{App, Params};
use crate::registry::storage::Upload;
use crate::store::Writeback;

/// Bytes buffered before a write to the data file.
const WRITE_SIZE: usize = 1 << 20;

/// What the server remembers of a session between requests.
pub enum Slot {
    /// A request is writing to it.
    Busy,
    /// The hash of the first `offset` bytes.
    Idle { offset: u64, hasher: Hasher },
}

/// Exclusive use of a session by one request; forgotten (so the next request re-hashes
/// from disk) if the request is dropped without releasing it.
struct Claim {
    app: Arc<App>,
    id: UploadId,
    open: bool,
}

impl Claim {
    /// Claim a session whose data file holds `size` bytes; the running hash comes with
    /// it when the server still has one for exactly those bytes.
    fn acquire(app: &Arc<App>, upload: &Upload) -> Result<(Claim, Option<Hasher>), ApiError> {
        let mut map = app.uploads.lock().map_err(|_| ApiError::internal("upload table poisoned"))?;
        let hasher = match map.remove(&upload.id) {
            Some(Slot::Busy) => {
                map.insert(upload.id.clone(), Slot::Busy);
                return Err(ApiError::new(Code::BlobUploadInvalid, "another request is writing to this upload")
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::RANGE, range(upload.size)));
            }
            Some(Slot::Idle { offset, hasher }) if offset == upload.size => Some(hasher),
            _ if upload.size == 0 => Some(Hasher::new()),
            _ => None,
        };
        map.insert(upload.id.clone(), Slot::Busy);
        Ok((Claim { app: Arc::clone(app), id: upload.id.clone(), open: true }, hasher))
    }

    /// Keep the running hash for the next request.
    fn release(mut self, offset: u64, hasher: Option<Hasher>) {
        self.open = false;
        if let Ok(mut map) = self.app.uploads.lock() {
            match hasher {
                Some(hasher) => map.insert(self.id.clone(), Slot::Idle { offset, hasher }),
                None => map.remove(&self.id),
            };
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.open {
            if let Ok(mut map) = self.app.uploads.lock() {
                map.remove(&self.id);
            }
        }
    }
}

/// `Range: 0-<last byte>` of a session holding `size` bytes (`0-0` when empty, as
/// distribution answers).
fn range(size: u64) -> HeaderValue {
    value(format!("0-{}", size.saturating_sub(1)))
}

fn session_headers(repo: &Repository, id: &UploadId, size: u64) -> [(HeaderName, HeaderValue); 3] {
    [
        (header::LOCATION, value(format!("/v2/{repo}/blobs/uploads/{id}"))),
        (UPLOAD_UUID, value(id.as_str())),
        (header::RANGE, range(size)),
    ]
}

fn blob_created(repo: &Repository, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[(header::LOCATION, value(format!("/v2/{repo}/blobs/{digest}"))), (CONTENT_DIGEST, value(digest.to_string()))],
    )
}

fn digest_param(params: &Params, name: &str) -> Result<Option<Digest>, ApiError> {
    params.get(name).map(|d| d.parse::<Digest>().map_err(|e| ApiError::new(Code::DigestInvalid, e))).transpose()
}

pub async fn start(app: Arc<App>, repo: Repository, params: Params, req: Request) -> Result<Response, ApiError> {
    if let Some(digest) = digest_param(&params, "mount")? {
        let from = params.get("from").and_then(|f| Repository::parse(f));
        let (a, r, d) = (Arc::clone(&app), repo.clone(), digest.clone());
        let mounted = blocking(move || {
            Ok(match from {
                Some(from) => a.storage.mount(&from, &r, &d)?,
                // Without `from`, any blob the registry holds can be mounted.
                None => a.storage.blobs().path(&d).is_file() && a.storage.add_link(&r, &d).is_ok(),
            })
        })
        .await?;
        if mounted {
            return Ok(blob_created(&repo, &digest));
        }
    }
    let (a, r) = (Arc::clone(&app), repo.clone());
    let (total, per_repo) = (app.limits.max_uploads, app.limits.max_uploads_per_repo);
    let upload = blocking(move || Ok(a.storage.start_upload_capped(&r, total, per_repo)?)).await?;
    match digest_param(&params, "digest") {
        Ok(Some(digest)) => {
            let id = upload.id.clone();
            let result = close(&app, &repo, upload, digest, req).await;
            if result.is_err() {
                let a = Arc::clone(&app);
                let _ = blocking(move || Ok(a.storage.cancel_upload(&id)?)).await;
            }
            result
        }
        Ok(None) => Ok(empty(StatusCode::ACCEPTED, &session_headers(&repo, &upload.id, 0))),
        Err(e) => {
            let id = upload.id.clone();
            let _ = blocking(move || Ok(app.storage.cancel_upload(&id)?)).await;
            Err(e)
        }
    }
}

pub async fn status(app: Arc<App>, repo: Repository, id: UploadId) -> Result<Response, ApiError> {
    let r = repo.clone();
    let upload = blocking(move || Ok(app.storage.upload(&r, &id)?)).await?;
    Ok(empty(StatusCode::NO_CONTENT, &session_headers(&repo, &upload.id, upload.size)))
}

pub async fn patch(app: Arc<App>, repo: Repository, id: UploadId, req: Request) -> Result<Response, ApiError> {
    let (a, r) = (Arc::clone(&app), repo.clone());
    let upload = blocking(move || Ok(a.storage.upload(&r, &id)?)).await?;
    let exact = declared_length(req.headers(), &repo, &upload)?;
    let (claim, hasher) = Claim::acquire(&app, &upload)?;
    let start = upload.size;
    let kept = hasher.clone();
    match append(upload.data.clone(), start, req.into_body(), exact, hasher).await {
        Ok((end, hasher)) => {
            claim.release(end, hasher);
            Ok(empty(StatusCode::ACCEPTED, &session_headers(&repo, &upload.id, end)))
        }
        Err(e) => {
            claim.release(start, kept);
            Err(e)
        }
    }
}

pub async fn finish(
    app: Arc<App>,
    repo: Repository,
    id: UploadId,
    params: Params,
    req: Request,
) -> Result<Response, ApiError> {
    let digest = digest_param(&params, "digest")?
        .ok_or_else(|| ApiError::new(Code::DigestInvalid, "closing an upload needs ?digest="))?;
    let (a, r) = (Arc::clone(&app), repo.clone());
    let upload = blocking(move || Ok(a.storage.upload(&r, &id)?)).await?;
    close(&app, &repo, upload, digest, req).await
}

/// Append the final body (if any) and commit the session as blob `digest`.
async fn close(
    app: &Arc<App>,
    repo: &Repository,
    upload: Upload,
    digest: Digest,
    req: Request,
) -> Result<Response, ApiError> {
    let exact = declared_length(req.headers(), repo, &upload)?;
    let (claim, hasher) = Claim::acquire(app, &upload)?;
    let start = upload.size;
    let kept = hasher.clone();
    let hashed = match append(upload.data.clone(), start, req.into_body(), exact, hasher).await {
        Ok((_, hasher)) => hasher.map(Hasher::finish),
        Err(e) => {
            claim.release(start, kept);
            return Err(e);
        }
    };
    let (a, r, id, d) = (Arc::clone(app), repo.clone(), upload.id.clone(), digest.clone());
    let result = blocking(move || Ok(a.storage.commit_upload(&r, &id, &d, hashed)?)).await;
    // Committed or refused (a refused session is dropped by storage): nothing to keep.
    claim.release(0, None);
    result?;
    Ok(blob_created(repo, &digest))
}

/// The exact body length a request declares: by `Content-Range: <start>-<end>`, which
/// must continue the session (else 416), and by `Content-Length`, which must agree.
fn declared_length(headers: &HeaderMap, repo: &Repository, upload: &Upload) -> Result<Option<u64>, ApiError> {
    let content_length = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::new(Code::SizeInvalid, "bad Content-Length"))?,
        ),
    };
    let Some(cr) = headers.get(header::CONTENT_RANGE) else { return Ok(content_length) };
    let out_of_order = |message: String| {
        let mut e = ApiError::new(Code::BlobUploadInvalid, message).with_status(StatusCode::RANGE_NOT_SATISFIABLE);
        for (n, v) in session_headers(repo, &upload.id, upload.size) {
            e = e.with_header(n, v);
        }
        e
    };
    let text = cr.to_str().unwrap_or("");
    let spec = text.trim().trim_start_matches("bytes").trim_start_matches(['=', ' ']);
    let spec = spec.split('/').next().unwrap_or("");
    let (start, end) = spec
        .split_once('-')
        .and_then(|(s, e)| Some((s.trim().parse::<u64>().ok()?, e.trim().parse::<u64>().ok()?)))
        .filter(|(s, e)| e >= s)
        .ok_or_else(|| out_of_order(format!("bad Content-Range '{text}'")))?;
    if start != upload.size {
        return Err(out_of_order(format!("chunk starts at {start}, not at {}", upload.size)));
    }
    let length = end - start + 1;
    if content_length.is_some_and(|n| n != length) {
        return Err(ApiError::new(
            Code::SizeInvalid,
            format!("Content-Length does not match Content-Range {start}-{end}"),
        ));
    }
    Ok(Some(length))
}

/// Write a request body to `data` from `offset`, hashing it when `hasher` is given.
/// When `exact` is given the body must be exactly that long. On failure the file is cut
/// back to `offset`. Returns the new end and hash.
async fn append(
    data: PathBuf,
    offset: u64,
    body: Body,
    exact: Option<u64>,
    hasher: Option<Hasher>,
) -> Result<(u64, Option<Hasher>), ApiError> {
    let path = data.clone();
    let file = blocking(move || {
        let f = OpenOptions::new().write(true).open(&path).at(&path)?;
        f.set_len(offset).at(&path)?;
        Ok(Arc::new(f))
    })
    .await?;
    let mut state = Writer {
        file: Arc::clone(&file),
        pos: offset,
        buf: Vec::with_capacity(WRITE_SIZE),
        hasher,
        writeback: Writeback::default(),
    };
    let result = async {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(body_error)?;
            let received = state.pos - offset + (state.buf.len() + chunk.len()) as u64;
            if exact.is_some_and(|n| received > n) {
                return Err(ApiError::new(Code::SizeInvalid, "body is longer than declared"));
            }
            state.buf.extend_from_slice(&chunk);
            if state.buf.len() >= WRITE_SIZE {
                state = state.flush().await?;
            }
        }
        state = state.flush().await?;
        if exact.is_some_and(|n| state.pos - offset != n) {
            return Err(ApiError::new(Code::SizeInvalid, "body is shorter than declared"));
        }
        Ok(state)
    }
    .await;
    match result {
        Ok(state) => Ok((state.pos, state.hasher)),
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || file.set_len(offset)).await;
            Err(e)
        }
    }
}

/// A request body that failed: too slow (408, see `body.rs`), or cut.
fn body_error(e: axum::Error) -> ApiError {
    let inner = e.into_inner();
    if crate::registry::body::BodyTooSlow::is(inner.as_ref()) {
        ApiError::new(Code::BlobUploadInvalid, format!("upload body: {inner}")).with_status(StatusCode::REQUEST_TIMEOUT)
    } else {
        ApiError::new(Code::BlobUploadInvalid, format!("upload body: {inner}"))
    }
}

/// A buffered writer at an offset, hashing what it writes on the blocking pool.
struct Writer {
    file: Arc<File>,
    pos: u64,
    buf: Vec<u8>,
    hasher: Option<Hasher>,
    writeback: Writeback,
}

impl Writer {
    async fn flush(mut self) -> Result<Writer, ApiError> {
        if self.buf.is_empty() {
            return Ok(self);
        }
        blocking(move || {
            let n = self.buf.len() as u64;
            self.file.write_all_at(&self.buf, self.pos).map_err(|e| ApiError::io("upload write", &e))?;
            if let Some(h) = &mut self.hasher {
                h.update(&self.buf);
            }
            self.pos += n;
            self.writeback.wrote(&self.file, self.pos);
            self.buf.clear();
            Ok(self)
        })
        .await
    }
}

pub async fn cancel(app: Arc<App>, repo: Repository, id: UploadId) -> Result<Response, ApiError> {
    let a = Arc::clone(&app);
    let i = id.clone();
    blocking(move || {
        a.storage.upload(&repo, &i)?;
        Ok(a.storage.cancel_upload(&i)?)
    })
    .await?;
    if let Ok(mut map) = app.uploads.lock() {
        map.remove(&id);
    }
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}
