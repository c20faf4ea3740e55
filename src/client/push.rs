//! Pushing over the distribution API: blob existence (`HEAD`), cross-repository mounts,
//! monolithic uploads for small blobs and chunked `PATCH` uploads for large ones (the last
//! chunk sent with the `PUT` that completes the upload: one request fewer), and manifests
//! stored by their exact bytes and media type.
//!
//! An upload that fails part-way (a dropped connection, a registry that lost the upload
//! session, a digest the registry computed differently) starts over from a fresh upload
//! session, with the client's backoff between tries.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use reqwest::blocking::{Body, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};

use crate::client::http::{error_detail, header};
use crate::client::Client;
use crate::digest::Digest;
use crate::error::{usage, Error, IoContext, Result};
use crate::oci;
use crate::oci::names::{ImageRef, Reference};

/// Default upload chunk: blobs up to this size go in one `PUT`, larger ones in `PATCH`
/// chunks of this size.
pub const CHUNK: u64 = 64 << 20;

/// How a blob got into the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository already had it.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// Why one upload attempt failed.
enum Failure {
    /// Start again with a new upload session.
    Restart(String),
    /// Trying again would not help.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Fatal(e)
    }
}

fn push_scope(image: &ImageRef, from: Option<&str>) -> String {
    let own = format!("repository:{}:pull,push", image.repository);
    match from {
        Some(f) if f != image.repository.as_str() => format!("{own} repository:{f}:pull"),
        _ => own,
    }
}

/// A byte range of a file as a request body; each try gets its own (shared file, `pread`).
struct Section {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the staged blob is shorter than its size",
            ));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The error for an answer a push did not expect: `403` is a refusal, the rest name
/// the status and the registry's error codes.
fn refused(image: &ImageRef, what: &str, resp: Response) -> Error {
    let status = resp.status().as_u16();
    let detail = error_detail(resp);
    let why = match status {
        401 | 403 => "refused the push (are these credentials allowed to push there?)".to_string(),
        404 => "has no such repository or does not accept pushes to it".to_string(),
        507 => {
            return usage(format!(
                "{image}: registry {} refused the upload: no space left on device (507)",
                image.registry
            ))
        }
        _ => format!("answered {status}"),
    };
    usage(format!("{image}: registry {} {why} while {what}{detail}", image.registry))
}

impl Client {
    /// Whether the repository of `image` has blob `digest` (`HEAD`).
    pub fn blob_exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool> {
        let what = format!("checking for blob {digest}");
        let path = format!("/v2/{}/blobs/{digest}", image.repository);
        let scope = push_scope(image, None);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| http.head(format!("{base}{path}")))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(refused(image, &what, resp)),
        }
    }

    /// Mount blob `digest` into the repository of `image` from repository `from` of the
    /// same registry, without sending it: whether the registry did. When it starts an
    /// upload instead (it cannot mount), that upload is cancelled.
    pub fn mount_blob(&self, image: &ImageRef, digest: &Digest, from: &str) -> Result<bool> {
        let what = format!("mounting blob {digest} from {from}");
        let scope = push_scope(image, Some(from));
        let uploads = format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", image.repository);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| {
            http.post(format!("{base}{uploads}")).header(CONTENT_LENGTH, "0")
        })?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                // Cancelling is a courtesy: the registry expires abandoned uploads anyway.
                if let Ok(location) = self.location(image, &resp) {
                    let _ = self.send_scoped(image, &what, Some(&scope), &|http, _| http.delete(location.clone()));
                }
                Ok(false)
            }
            404 => Ok(false),
            _ => Err(refused(image, &what, resp)),
        }
    }

    /// Put blob `digest` (the file at `path`, `size` bytes) into the repository of
    /// `image`: mounted from repository `from` when given and the registry agrees,
    /// else uploaded, in one request up to `chunk` bytes, else in chunks of `chunk`.
    pub fn push_blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
        (path, size): (&Path, u64),
        from: Option<&str>,
        chunk: u64,
    ) -> Result<BlobOutcome> {
        let chunk = chunk.max(1);
        let file = Arc::new(File::open(path).at(path)?);
        // Staged blobs were written around the page cache: have the kernel read this one
        // ahead as a whole while the upload starts. It is advice: its result does not matter.
        let _ = rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::WillNeed);
        let mut tries = self.policy().tries();
        let mut mount = from.filter(|f| *f != image.repository.as_str());
        loop {
            match self.upload_once(image, digest, (&file, size), mount.take(), chunk) {
                Ok(outcome) => return Ok(outcome),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Restart(_)) if tries.again(None) => {}
                Err(Failure::Restart(reason)) => {
                    return Err(usage(format!(
                        "{image}: uploading blob {digest} to registry {}: {reason} (gave up after {} tries)",
                        image.registry,
                        tries.failed()
                    )))
                }
            }
        }
    }

    fn upload_once(
        &self,
        image: &ImageRef,
        digest: &Digest,
        (file, size): (&Arc<File>, u64),
        mount: Option<&str>,
        chunk: u64,
    ) -> std::result::Result<BlobOutcome, Failure> {
        let scope = push_scope(image, mount);
        let what = format!("uploading blob {digest}");
        let uploads = match mount {
            Some(from) => format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", image.repository),
            None => format!("/v2/{}/blobs/uploads/", image.repository),
        };
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| {
            http.post(format!("{base}{uploads}")).header(CONTENT_LENGTH, "0")
        })?;
        match resp.status().as_u16() {
            201 if mount.is_some() => return Ok(BlobOutcome::Mounted),
            202 => {}
            s if s >= 500 && s != 507 => return Err(Failure::Restart(format!("starting an upload: answered {s}"))),
            _ => return Err(Failure::Fatal(refused(image, "starting a blob upload", resp))),
        }
        let mut location = self.location(image, &resp)?;
        // Every chunk but the last as a `PATCH`; the last goes with the `PUT` that
        // completes the upload (the whole blob when it fits in one chunk).
        let mut offset = 0;
        while size - offset > chunk {
            let f = file.clone();
            let at = offset;
            let resp = self.send_scoped(image, &what, Some(&scope), &|http, _| {
                http.patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{at}-{}", at + chunk - 1))
                    .body(Body::sized(Section { file: f.clone(), offset: at, remaining: chunk }, chunk))
            })?;
            match resp.status().as_u16() {
                202 | 204 => location = self.location(image, &resp)?,
                s @ (400 | 404 | 416 | 500..=506 | 508..) => {
                    return Err(Failure::Restart(format!(
                        "sending bytes {at}-{}: answered {s}{}",
                        at + chunk - 1,
                        error_detail(resp)
                    )))
                }
                _ => return Err(Failure::Fatal(refused(image, &what, resp))),
            }
            offset += chunk;
        }
        let (f, at, len) = (file.clone(), offset, size - offset);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, _| {
            let put = http.put(with_digest(&location, digest)).header(CONTENT_TYPE, "application/octet-stream");
            let put = if at > 0 { put.header(CONTENT_RANGE, format!("{at}-{}", at + len - 1)) } else { put };
            put.body(Body::sized(Section { file: f.clone(), offset: at, remaining: len }, len))
        })?;
        finished(image, &what, resp)
    }

    /// The absolute upload URL of a `Location` header (registries may send a path).
    fn location(&self, image: &ImageRef, resp: &Response) -> std::result::Result<reqwest::Url, Failure> {
        let Some(loc) = header(resp.headers(), LOCATION.as_str()) else {
            return Err(Failure::Restart("the registry sent no upload Location".into()));
        };
        resp.url().join(&loc).map_err(|e| {
            Failure::Fatal(usage(format!(
                "{image}: registry {} sent a bad upload Location '{loc}': {e}",
                image.registry
            )))
        })
    }

    /// The digest `reference` (a tag or digest) points at in the repository of `image`,
    /// if any (`HEAD`, `Docker-Content-Digest`).
    pub fn manifest_digest(&self, image: &ImageRef, reference: &str) -> Result<Option<String>> {
        let what = format!("checking for manifest {reference}");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let accept = [oci::OCI_MANIFEST, oci::OCI_INDEX, oci::DOCKER_MANIFEST, oci::DOCKER_LIST].join(", ");
        let scope = push_scope(image, None);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| {
            http.head(format!("{base}{path}")).header(ACCEPT, &accept)
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(Some(header(resp.headers(), "docker-content-digest").unwrap_or_default())),
            404 => Ok(None),
            _ => Err(refused(image, &what, resp)),
        }
    }

    /// Store a manifest under `reference` (its digest, or a tag) with its exact bytes.
    pub fn put_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
    ) -> Result<()> {
        let what = format!("pushing manifest {digest} as {reference}");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let scope = push_scope(image, None);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| {
            http.put(format!("{base}{path}")).header(CONTENT_TYPE, media_type).body(bytes.to_vec())
        })?;
        if !resp.status().is_success() {
            return Err(refused(image, &what, resp));
        }
        if let Some(h) = header(resp.headers(), "docker-content-digest") {
            if h.starts_with("sha256:") && h != digest.to_string() {
                return Err(usage(format!(
                    "{image}: registry {} stored manifest {digest} under digest {h}: it changed the bytes",
                    image.registry
                )));
            }
        }
        Ok(())
    }
}

impl Client {
    /// Delete manifest `reference` (a digest; a tag where the registry allows it) from the
    /// repository of `image`; one already gone is no error.
    pub fn delete_manifest(&self, image: &ImageRef, reference: &Reference) -> Result<()> {
        let what = format!("deleting manifest {reference}");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let scope = format!("repository:{}:delete", image.repository);
        let resp = self.send_scoped(image, &what, Some(&scope), &|http, base| http.delete(format!("{base}{path}")))?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(refused(image, &what, resp)),
        }
    }
}

/// `URL` with `digest=…` added to its query.
fn with_digest(location: &reqwest::Url, digest: &Digest) -> reqwest::Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", &digest.to_string());
    url
}

/// The answer to the `PUT` that completes an upload.
fn finished(image: &ImageRef, what: &str, resp: Response) -> std::result::Result<BlobOutcome, Failure> {
    match resp.status().as_u16() {
        200..=299 => Ok(BlobOutcome::Uploaded),
        s @ (400 | 404 | 416 | 500..=506 | 508..) => {
            Err(Failure::Restart(format!("completing the upload: answered {s}{}", error_detail(resp))))
        }
        _ => Err(Failure::Fatal(refused(image, what, resp))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_the_mount_source() {
        let image = ImageRef::parse("docker://r.example/m/app:1").unwrap();
        assert_eq!(push_scope(&image, None), "repository:m/app:pull,push");
        assert_eq!(push_scope(&image, Some("m/app")), "repository:m/app:pull,push");
        assert_eq!(push_scope(&image, Some("o/x")), "repository:m/app:pull,push repository:o/x:pull");
    }

    #[test]
    fn digests_join_the_upload_query() {
        let d = Digest::of(b"x");
        let u = reqwest::Url::parse("https://r/v2/a/blobs/uploads/u?_state=s").unwrap();
        assert_eq!(
            with_digest(&u, &d).as_str(),
            format!("https://r/v2/a/blobs/uploads/u?_state=s&digest=sha256%3A{}", d.hex())
        );
    }
}
