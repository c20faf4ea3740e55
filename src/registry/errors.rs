//! API errors and their one conversion into the OCI error envelope
//! `{"errors":[{"code":…,"message":…,"detail":…}]}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::names::RouteError;
use super::storage::StorageError;

/// An error code of the distribution-spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    /// The status a code is answered with unless an endpoint says otherwise.
    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown | Code::BlobUploadUnknown | Code::ManifestUnknown | Code::NameUnknown => {
                StatusCode::NOT_FOUND
            }
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// None for errors without a spec code (internal errors, unknown endpoints).
    pub code: Option<Code>,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Extra headers (WWW-Authenticate, Range).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { status: code.status(), code: Some(code), message: message.into(), detail: None, headers: Vec::new() }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: None,
            message: "no such endpoint".into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(Code::Unsupported, "method not allowed on this endpoint")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: None,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(Code::Unauthorized, "authentication required")
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"airlift\""))
    }

    /// 507 Insufficient Storage: the disk (or quota) is full. The message says so (it is
    /// not hidden like other server errors: the client must be able to name it).
    pub fn no_space(detail: impl Into<String>) -> ApiError {
        eprintln!("error: {}", detail.into());
        ApiError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            code: None,
            message: "no space left on device".into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// An I/O error while serving: 507 when the disk is full, else an internal error.
    pub fn io(what: &str, e: &std::io::Error) -> ApiError {
        if no_space(e) {
            ApiError::no_space(format!("{what}: {e}"))
        } else {
            ApiError::internal(format!("{what}: {e}"))
        }
    }

    pub fn read_only() -> ApiError {
        ApiError::new(Code::Unsupported, "the registry is read-only")
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => ApiError::not_found(),
            RouteError::NameInvalid(n) => ApiError::new(Code::NameInvalid, format!("invalid repository name '{n}'")),
            RouteError::DigestInvalid(d) => ApiError::new(Code::DigestInvalid, format!("invalid digest '{d}'")),
            RouteError::TagInvalid(t) => ApiError::new(Code::ManifestInvalid, format!("invalid tag '{t}'")),
            RouteError::UploadUnknown(u) => ApiError::new(Code::BlobUploadUnknown, format!("upload {u} is not known")),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let message = e.to_string();
        let code = match &e {
            StorageError::NameInvalid(_) => Code::NameInvalid,
            StorageError::TagInvalid(_) => Code::ManifestInvalid,
            StorageError::NameUnknown(_) => Code::NameUnknown,
            StorageError::BlobUnknown(_) => Code::BlobUnknown,
            StorageError::ManifestUnknown(_) => Code::ManifestUnknown,
            StorageError::ManifestInvalid(_) => Code::ManifestInvalid,
            StorageError::ManifestBlobUnknown(d) => {
                return ApiError::new(Code::ManifestBlobUnknown, message)
                    .with_detail(serde_json::json!({ "digest": d.to_string() }))
            }
            StorageError::DigestInvalid { .. } => Code::DigestInvalid,
            StorageError::UploadUnknown(_) => Code::BlobUploadUnknown,
            StorageError::TooManyUploads(_) => Code::TooManyRequests,
            StorageError::Io(crate::error::Error::Io { source, .. }) if no_space(source) => {
                return ApiError::no_space(message)
            }
            StorageError::Io(_) => return ApiError::internal(message),
        };
        ApiError::new(code, message)
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        match &e {
            crate::error::Error::Io { source, .. } if no_space(source) => ApiError::no_space(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// ENOSPC or EDQUOT.
fn no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Server errors are logged and answered without detail (it may name paths), but
        // a full disk is named: the client must tell the operator.
        let shown = !self.status.is_server_error() || self.status == StatusCode::INSUFFICIENT_STORAGE;
        if !shown {
            eprintln!("error: {}", self.message);
        }
        let mut entry = serde_json::json!({
            "code": self.code.map_or("UNKNOWN", Code::as_str),
            "message": if shown { self.message } else { "internal error".to_string() },
        });
        if let Some(d) = self.detail {
            entry["detail"] = d;
        }
        let body = serde_json::to_vec(&serde_json::json!({ "errors": [entry] })).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
