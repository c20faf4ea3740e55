//! Thin handlers: take what the request says, call storage (off the async threads), and
//! build the response.

pub mod blobs;
pub mod listing;
pub mod manifests;
pub mod uploads;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::errors::ApiError;

/// `Docker-Content-Digest`
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `OCI-Subject`
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// `OCI-Filters-Applied`
pub const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Run blocking storage work on the blocking pool.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
}

/// A header value from text the registry made (digests, names, numbers: always valid).
pub fn value(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A response with a status, headers and body.
pub fn response(status: StatusCode, headers: &[(HeaderName, HeaderValue)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (name, value) in headers {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    r
}

/// An empty response (`Content-Length: 0`).
pub fn empty(status: StatusCode, headers: &[(HeaderName, HeaderValue)]) -> Response {
    let mut r = response(status, headers, Body::empty());
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON document of the given content type.
pub fn json(doc: &serde_json::Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    response(
        StatusCode::OK,
        &[
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_LENGTH, value(body.len().to_string())),
        ],
        Body::from(body),
    )
}
