//! `/v2/<name>/manifests/<reference>`: GET, HEAD, PUT, DELETE.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;

use super::{blocking, empty, response, value, CONTENT_DIGEST, OCI_SUBJECT};
use crate::digest::Digest;
use crate::oci::names::{Reference, Repository};
use crate::oci::MAX_MANIFEST;
use crate::registry::errors::{ApiError, Code};
use crate::registry::routes::App;

pub async fn get(app: Arc<App>, repo: Repository, reference: Reference, head: bool) -> Result<Response, ApiError> {
    let (stored, bytes) = blocking(move || {
        let stored = app.storage.resolve(&repo, &reference)?;
        let bytes = if head { None } else { Some(app.storage.read_manifest_blob(&stored.digest)?) };
        Ok((stored, bytes))
    })
    .await?;
    let headers = [
        (header::CONTENT_TYPE, value(&stored.revision.media_type)),
        (header::CONTENT_LENGTH, value(stored.revision.size.to_string())),
        (CONTENT_DIGEST, value(stored.digest.to_string())),
        (header::ETAG, value(format!("\"{}\"", stored.digest))),
    ];
    Ok(response(StatusCode::OK, &headers, bytes.map(Body::from).unwrap_or_else(Body::empty)))
}

pub async fn put(app: Arc<App>, repo: Repository, reference: Reference, req: Request) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::new(Code::SizeInvalid, format!("manifest larger than {MAX_MANIFEST} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST) {
        return Err(too_large());
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = axum::body::to_bytes(req.into_body(), MAX_MANIFEST as usize).await.map_err(|_| too_large())?;
    if declared.is_some_and(|n| n != bytes.len() as u64) {
        return Err(ApiError::new(Code::SizeInvalid, "manifest body does not match its Content-Length"));
    }
    let digest = Digest::of(&bytes);
    if let Reference::Digest(d) = &reference {
        if d != &digest {
            return Err(ApiError::new(Code::DigestInvalid, format!("manifest is {digest}, not {d}")));
        }
    }
    let location = format!("/v2/{repo}/manifests/{digest}");
    let stored = blocking(move || {
        let tag = match &reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        Ok(app.storage.put_manifest(&repo, &bytes, content_type.as_deref(), tag)?)
    })
    .await?;
    let mut headers = vec![(header::LOCATION, value(location)), (CONTENT_DIGEST, value(digest.to_string()))];
    if let Some(subject) = &stored.revision.subject {
        headers.push((OCI_SUBJECT, value(subject.to_string())));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

pub async fn delete(app: Arc<App>, repo: Repository, reference: Reference) -> Result<Response, ApiError> {
    blocking(move || Ok(app.storage.delete_manifest(&repo, &reference)?)).await?;
    Ok(empty(StatusCode::ACCEPTED, &[]))
}
