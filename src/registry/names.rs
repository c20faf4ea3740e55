//! The registry's own names: upload ids, and the parser that turns a request path under
//! `/v2/` into a [`Route`] (repositories, tags and references are `crate::oci::names`').
//!
//! Every value here is validated on construction; storage builds paths only from them.

use std::fmt;

use crate::digest::Digest;
use crate::oci::names::{Reference, Repository, Tag};

/// An upload session id: 32 lowercase hex digits, made by the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn generate() -> std::io::Result<UploadId> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(UploadId(crate::digest::hex(&bytes)))
    }

    pub fn parse(id: &str) -> Option<UploadId> {
        (id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| UploadId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An endpoint of the API, from the path after `/v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(Repository),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(Repository, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(Repository, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(Repository),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(Repository, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(Repository, Digest),
}

/// Why a path does not name an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NotFound,
    NameInvalid(String),
    DigestInvalid(String),
    TagInvalid(String),
    /// An upload id the registry cannot have made.
    UploadUnknown(String),
}

/// Parse a request path (`/v2/...`, as sent: no percent-decoding, so nothing encoded
/// can smuggle a `/` or `..` into a name). The endpoint is recognised from the end of
/// the path, since repository names contain `/` and may contain `manifests` or `blobs`
/// as components.
pub fn parse_route(path: &str) -> Result<Route, RouteError> {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(Route::Base),
        Some(r) => r.strip_prefix('/').ok_or(RouteError::NotFound)?,
        None => return Err(RouteError::NotFound),
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let tail = |k: usize| if n > k { Some(&segments[n - k..]) } else { None };
    let name = |k: usize| {
        let name = segments[..n - k].join("/");
        Repository::parse(&name).ok_or(RouteError::NameInvalid(name))
    };
    let digest = |s: &str| s.parse::<Digest>().map_err(|_| RouteError::DigestInvalid(s.to_string()));
    if let Some(["blobs", "uploads", ""]) = tail(3) {
        return Ok(Route::UploadStart(name(3)?));
    }
    if let Some(["blobs", "uploads"]) = tail(2) {
        return Ok(Route::UploadStart(name(2)?));
    }
    if let Some(["blobs", "uploads", id]) = tail(3) {
        let repo = name(3)?;
        let id = UploadId::parse(id).ok_or_else(|| RouteError::UploadUnknown(id.to_string()))?;
        return Ok(Route::Upload(repo, id));
    }
    match tail(2) {
        Some(["tags", "list"]) => Ok(Route::Tags(name(2)?)),
        Some(["manifests", reference]) => {
            let repo = name(2)?;
            let reference = if reference.contains(':') {
                Reference::Digest(digest(reference)?)
            } else {
                Reference::Tag(Tag::parse(reference).ok_or_else(|| RouteError::TagInvalid(reference.to_string()))?)
            };
            Ok(Route::Manifest(repo, reference))
        }
        Some(["blobs", d]) => {
            let repo = name(2)?;
            Ok(Route::Blob(repo, digest(d)?))
        }
        Some(["referrers", d]) => {
            let repo = name(2)?;
            Ok(Route::Referrers(repo, digest(d)?))
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(parse_route("/v2/"), Ok(Route::Base));
        assert_eq!(parse_route("/v2"), Ok(Route::Base));
        assert_eq!(parse_route("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(parse_route("/v2/ns/app/tags/list"), Ok(Route::Tags(repo("ns/app"))));
        assert_eq!(
            parse_route("/v2/a/manifests/b/manifests/latest"),
            Ok(Route::Manifest(repo("a/manifests/b"), Reference::Tag(Tag::parse("latest").unwrap())))
        );
        assert_eq!(
            parse_route(&format!("/v2/ns/app/manifests/{D}")),
            Ok(Route::Manifest(repo("ns/app"), Reference::Digest(d.clone())))
        );
        assert_eq!(parse_route(&format!("/v2/x/blobs/{D}")), Ok(Route::Blob(repo("x"), d.clone())));
        assert_eq!(parse_route("/v2/x/blobs/uploads/"), Ok(Route::UploadStart(repo("x"))));
        assert_eq!(parse_route("/v2/x/y/blobs/uploads"), Ok(Route::UploadStart(repo("x/y"))));
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_route(&format!("/v2/blobs/blobs/uploads/{id}")),
            Ok(Route::Upload(repo("blobs"), UploadId::parse(id).unwrap()))
        );
        assert_eq!(parse_route(&format!("/v2/x/referrers/{D}")), Ok(Route::Referrers(repo("x"), d)));
    }

    #[test]
    fn bad_routes() {
        assert_eq!(parse_route("/v1/x"), Err(RouteError::NotFound));
        assert_eq!(parse_route("/v2x"), Err(RouteError::NotFound));
        assert_eq!(parse_route("/v2/x"), Err(RouteError::NotFound));
        assert_eq!(parse_route("/v2/x/tags"), Err(RouteError::NotFound));
        assert_eq!(parse_route("/v2/manifests/latest"), Err(RouteError::NotFound));
        assert!(matches!(parse_route("/v2/../manifests/latest"), Err(RouteError::NameInvalid(_))));
        assert!(matches!(parse_route("/v2/a/../b/manifests/latest"), Err(RouteError::NameInvalid(_))));
        assert!(matches!(parse_route("/v2/a%2F..%2Fb/tags/list"), Err(RouteError::NameInvalid(_))));
        assert!(matches!(parse_route("/v2/UP/tags/list"), Err(RouteError::NameInvalid(_))));
        assert!(parse_route("/v2/x/blobs/sha256:../../etc").is_err());
        assert!(matches!(parse_route("/v2/x/blobs/sha256:..%2F..%2Fetc"), Err(RouteError::DigestInvalid(_))));
        assert!(matches!(parse_route("/v2/x/blobs/sha512:00"), Err(RouteError::DigestInvalid(_))));
        assert!(matches!(parse_route("/v2/x/manifests/sha256:abc"), Err(RouteError::DigestInvalid(_))));
        assert!(matches!(parse_route("/v2/x/manifests/.hidden"), Err(RouteError::TagInvalid(_))));
        assert!(parse_route("/v2/x/blobs/uploads/../../x").is_err());
        assert!(matches!(parse_route("/v2/x/blobs/uploads/nothex"), Err(RouteError::UploadUnknown(_))));
        assert!(matches!(parse_route("/v2/x/referrers/latest"), Err(RouteError::DigestInvalid(_))));
    }
}
