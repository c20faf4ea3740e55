//! In-process router tests (tower's `oneshot`, no socket).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use tower::ServiceExt;

use super::*;
use crate::digest::Digest;
use crate::oci::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::limits::Limits;
use crate::registry::log::Log;

struct T {
    dir: tempfile::TempDir,
    app: Arc<App>,
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

impl T {
    fn new(read_only: bool) -> T {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("storage")).unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = Htpasswd::parse(&format!("user:{hash}\n")).unwrap();
        T { dir, app: App::new(storage, auth, read_only) }
    }

    async fn send_as(
        &self,
        auth: Option<&str>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(Arc::clone(&self.app)).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, headers, body)
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.send_as(Some(&basic("user", "pw")), method, uri, headers, body).await
    }

    /// Push a blob monolithically.
    async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        let (s, h, _) = self.send("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], bytes.to_vec()).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h["docker-content-digest"], d.to_string().as_str());
        d
    }

    fn files_under(&self, sub: &str) -> usize {
        walkdir::WalkDir::new(self.dir.path().join("storage").join(sub))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count()
    }
}

fn code(body: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

fn image(config: &Digest, layer: &Digest, subject: Option<&Digest>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 5}],
    });
    if let Some(s) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1});
        m["artifactType"] = "application/x-sbom".into();
    }
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn auth_is_required_for_pull_and_push() {
    let t = T::new(false);
    for auth in [None, Some(basic("user", "wrong")), Some(basic("nobody", "pw")), Some("Bearer x".to_string())] {
        for (method, uri) in [("GET", "/v2/"), ("GET", "/v2/a/tags/list"), ("POST", "/v2/a/blobs/uploads/")] {
            let (s, h, b) = t.send_as(auth.as_deref(), method, uri, &[], vec![]).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri} {auth:?}");
            assert_eq!(h["www-authenticate"], "Basic realm=\"airlift\"");
            assert_eq!(code(&b), "UNAUTHORIZED");
        }
    }
    let (s, h, _) = t.send("GET", "/v2/", &[], vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
    assert_eq!(t.files_under("uploads"), 0);
}

#[tokio::test]
async fn chunked_upload_and_blob_reads() {
    let t = T::new(false);
    let (s, h, _) = t.send("POST", "/v2/ns/app/blobs/uploads/", &[], vec![]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let loc = h["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/v2/ns/app/blobs/uploads/"));
    assert_eq!(h["docker-upload-uuid"].to_str().unwrap(), loc.rsplit('/').next().unwrap());
    let (s, h, _) =
        t.send("PATCH", &loc, &[("content-range", "0-4"), ("content-length", "5")], b"hello".to_vec()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(h["range"], "0-4");
    // Out of order, and longer than declared: refused, session unchanged.
    let (s, _, b) = t.send("PATCH", &loc, &[("content-range", "9-10")], b"xx".to_vec()).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(code(&b), "BLOB_UPLOAD_INVALID");
    let (s, _, b) = t.send("PATCH", &loc, &[("content-range", "5-6")], b"xxxx".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(code(&b), "SIZE_INVALID");
    let (s, h, _) = t.send("GET", &loc, &[], vec![]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h["range"], "0-4");
    // A chunk without Content-Range is appended.
    let (s, h, _) = t.send("PATCH", &loc, &[], b", world".to_vec()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(h["range"], "0-11");
    let data = b"hello, world!";
    let d = Digest::of(data);
    let (s, h, _) = t.send("PUT", &format!("{loc}?digest={d}"), &[], b"!".to_vec()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h["location"], format!("/v2/ns/app/blobs/{d}").as_str());
    assert_eq!(t.files_under("uploads"), 0);
    let (s, _, _) = t.send("GET", &loc, &[], vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let url = format!("/v2/ns/app/blobs/{d}");
    let (s, h, b) = t.send("GET", &url, &[], vec![]).await;
    assert_eq!((s, &b[..]), (StatusCode::OK, &data[..]));
    assert_eq!(h["docker-content-digest"], d.to_string().as_str());
    assert_eq!(h["content-length"], "13");
    let (s, h, b) = t.send("HEAD", &url, &[], vec![]).await;
    assert_eq!((s, b.len()), (StatusCode::OK, 0));
    assert_eq!(h["content-length"], "13");
    let (s, h, b) = t.send("GET", &url, &[("range", "bytes=7-")], vec![]).await;
    assert_eq!((s, &b[..]), (StatusCode::PARTIAL_CONTENT, &b"world!"[..]));
    assert_eq!(h["content-range"], "bytes 7-12/13");
    let (s, h, _) = t.send("GET", &url, &[("range", "bytes=13-")], vec![]).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */13");
    // An inverted range is unsatisfiable too (distribution spec), not the whole blob.
    let (s, h, _) = t.send("GET", &url, &[("range", "bytes=5-0")], vec![]).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */13");
    // Another repository does not hold it until mounted.
    let other = format!("/v2/other/blobs/{d}");
    let (s, _, b) = t.send("GET", &other, &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".to_string()));
    let (s, _, _) = t.send("POST", &format!("/v2/other/blobs/uploads/?mount={d}&from=nowhere"), &[], vec![]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, h, _) = t.send("POST", &format!("/v2/other/blobs/uploads/?mount={d}&from=ns/app"), &[], vec![]).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h["location"], other.as_str());
    let (s, _, _) = t.send("DELETE", &other, &[], vec![]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, _) = t.send("GET", &other, &[], vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_uploads_leave_nothing() {
    let t = T::new(false);
    let d = Digest::of(b"other");
    let (s, _, b) = t.send("POST", &format!("/v2/a/blobs/uploads/?digest={d}"), &[], b"content".to_vec()).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_string()));
    let (s, _, b) = t.send("POST", "/v2/a/blobs/uploads/?digest=sha256:zz", &[], b"content".to_vec()).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_string()));
    // A truncated monolithic upload (fewer bytes than Content-Length).
    let d = Digest::of(b"content");
    let (s, _, b) = t
        .send("POST", &format!("/v2/a/blobs/uploads/?digest={d}"), &[("content-length", "9")], b"content".to_vec())
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "SIZE_INVALID".to_string()));
    // A manifest body that is not what Content-Length says.
    let (s, _, b) = t
        .send("PUT", "/v2/a/manifests/v1", &[("content-length", "3"), ("content-type", OCI_MANIFEST)], b"{}".to_vec())
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "SIZE_INVALID".to_string()));
    // A malformed Content-Range is answered 416 with the session's state.
    let (_, h, _) = t.send("POST", "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = h["location"].to_str().unwrap().to_string();
    let (s, h, _) = t.send("PATCH", &loc, &[("content-range", "x-y")], b"ab".to_vec()).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["range"], "0-0");
    assert_eq!(h["location"], loc.as_str());
    assert_eq!(t.send("DELETE", &loc, &[], vec![]).await.0, StatusCode::NO_CONTENT);
    // Closing a session with the wrong digest drops it.
    let d = Digest::of(b"other");
    let (_, h, _) = t.send("POST", "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = h["location"].to_str().unwrap().to_string();
    let (s, _, _) = t.send("PUT", &format!("{loc}?digest={d}"), &[], b"content".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = t.send("GET", &loc, &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".to_string()));
    // Cancel.
    let (_, h, _) = t.send("POST", "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = h["location"].to_str().unwrap().to_string();
    assert_eq!(t.send("DELETE", &loc, &[], vec![]).await.0, StatusCode::NO_CONTENT);
    assert_eq!(t.send("DELETE", &loc, &[], vec![]).await.0, StatusCode::NOT_FOUND);
    // Bad names: nothing created.
    for uri in
        ["/v2/../blobs/uploads/", "/v2/a/../b/blobs/uploads/", "/v2/A/blobs/uploads/", "/v2/a%2F..%2Fb/blobs/uploads/"]
    {
        let (s, _, b) = t.send("POST", uri, &[], vec![]).await;
        assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "NAME_INVALID".to_string()), "{uri}");
    }
    let (s, _, b) = t.send("GET", "/v2/a/blobs/sha256:..%2F..%2Fetc", &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_string()));
    assert_eq!(t.files_under("uploads") + t.files_under("blobs") + t.files_under("repositories"), 0);
}

#[tokio::test]
async fn manifests_tags_catalog_referrers() {
    let t = T::new(false);
    let config = t.blob("ns/app", b"{}").await;
    let layer = t.blob("ns/app", b"layer").await;
    let missing = Digest::of(b"missing");
    let bad = image(&config, &missing, None);
    let (s, _, b) = t.send("PUT", "/v2/ns/app/manifests/v1", &[("content-type", OCI_MANIFEST)], bad).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".to_string()));
    assert_eq!(t.files_under("repositories/ns/app/_manifests"), 0);

    let m = image(&config, &layer, None);
    let md = Digest::of(&m);
    let (s, _, b) = t
        .send(
            "PUT",
            &format!("/v2/ns/app/manifests/{}", Digest::of(b"x")),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_string()));
    for tag in ["v1", "v2", "v3"] {
        let (s, h, _) =
            t.send("PUT", &format!("/v2/ns/app/manifests/{tag}"), &[("content-type", OCI_MANIFEST)], m.clone()).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(h["docker-content-digest"], md.to_string().as_str());
        assert_eq!(h["location"], format!("/v2/ns/app/manifests/{md}").as_str());
    }
    for r in ["v1".to_string(), md.to_string()] {
        let (s, h, b) = t.send("GET", &format!("/v2/ns/app/manifests/{r}"), &[], vec![]).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &m[..]));
        assert_eq!(h["content-type"], OCI_MANIFEST);
        assert_eq!(h["docker-content-digest"], md.to_string().as_str());
        let (s, h, b) = t.send("HEAD", &format!("/v2/ns/app/manifests/{r}"), &[], vec![]).await;
        assert_eq!((s, b.len()), (StatusCode::OK, 0));
        assert_eq!(h["content-length"], m.len().to_string().as_str());
    }
    let (s, _, b) = t.send("GET", "/v2/ns/app/manifests/nope", &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".to_string()));

    // An index of the image.
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": m.len()}]}))
    .unwrap();
    let (s, _, _) = t.send("PUT", "/v2/ns/app/manifests/multi", &[("content-type", OCI_INDEX)], index.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, b) = t.send("PUT", "/v2/other/manifests/multi", &[("content-type", OCI_INDEX)], index).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".to_string()));

    // Tags with pagination.
    let (s, h, b) = t.send("GET", "/v2/ns/app/tags/list?n=2", &[], vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v, serde_json::json!({"name": "ns/app", "tags": ["multi", "v1"]}));
    assert_eq!(h["link"], "</v2/ns/app/tags/list?n=2&last=v1>; rel=\"next\"");
    let (_, h, b) = t.send("GET", "/v2/ns/app/tags/list?n=2&last=v1", &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v2", "v3"]));
    assert!(h.get("link").is_none());
    let (s, _, b) = t.send("GET", "/v2/nothing/tags/list", &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "NAME_UNKNOWN".to_string()));
    let (_, _, b) = t.send("GET", "/v2/_catalog", &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["ns/app"]));

    // A referrer.
    let sbom = image(&config, &layer, Some(&md));
    let (s, h, _) = t.send("PUT", "/v2/ns/app/manifests/sbom", &[("content-type", OCI_MANIFEST)], sbom.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h["oci-subject"], md.to_string().as_str());
    let (s, h, b) = t.send("GET", &format!("/v2/ns/app/referrers/{md}"), &[], vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], OCI_INDEX);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["manifests"][0]["digest"], Digest::of(&sbom).to_string());
    assert_eq!(v["manifests"][0]["artifactType"], "application/x-sbom");
    let (_, h, b) =
        t.send("GET", &format!("/v2/ns/app/referrers/{md}?artifactType=application/x-other"), &[], vec![]).await;
    assert_eq!(h["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // Delete a tag, then the manifest.
    assert_eq!(t.send("DELETE", "/v2/ns/app/manifests/v3", &[], vec![]).await.0, StatusCode::ACCEPTED);
    assert_eq!(t.send("GET", "/v2/ns/app/manifests/v3", &[], vec![]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.send("DELETE", &format!("/v2/ns/app/manifests/{md}"), &[], vec![]).await.0, StatusCode::ACCEPTED);
    assert_eq!(t.send("GET", &format!("/v2/ns/app/manifests/{md}"), &[], vec![]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.send("GET", "/v2/ns/app/manifests/v1", &[], vec![]).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn large_manifest_accepted_and_bounded() {
    let t = T::new(false);
    let config = t.blob("big", b"{}").await;
    let layer = t.blob("big", b"layer").await;
    let mut m: serde_json::Value = serde_json::from_slice(&image(&config, &layer, None)).unwrap();
    m["annotations"] = serde_json::json!({"pad": "x".repeat(5 << 20)});
    let bytes = serde_json::to_vec(&m).unwrap();
    let (s, _, _) = t.send("PUT", "/v2/big/manifests/v1", &[("content-type", OCI_MANIFEST)], bytes.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, _, b) = t.send("GET", "/v2/big/manifests/v1", &[], vec![]).await;
    assert_eq!(b.len(), bytes.len());
    m["annotations"] = serde_json::json!({"pad": "x".repeat(17 << 20)});
    let (s, _, b) =
        t.send("PUT", "/v2/big/manifests/v2", &[("content-type", OCI_MANIFEST)], serde_json::to_vec(&m).unwrap()).await;
    assert_eq!((s, code(&b)), (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID".to_string()));
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let t = T::new(true);
    for (method, uri) in [
        ("POST", "/v2/a/blobs/uploads/"),
        ("PUT", "/v2/a/manifests/v1"),
        ("DELETE", "/v2/a/manifests/v1"),
        ("PATCH", "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef"),
    ] {
        let (s, _, b) = t.send(method, uri, &[], b"{}".to_vec()).await;
        assert_eq!((s, code(&b)), (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".to_string()), "{method} {uri}");
    }
    assert_eq!(t.send("GET", "/v2/", &[], vec![]).await.0, StatusCode::OK);
    assert_eq!(t.files_under("uploads") + t.files_under("repositories"), 0);
}

#[tokio::test]
async fn upload_sessions_are_capped_per_repository_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("storage")).unwrap();
    let auth = Htpasswd::parse(&format!("user:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let limits = Limits { max_uploads: 3, max_uploads_per_repo: 2, ..Limits::default() };
    let t = T { dir, app: App::with(storage, Credentials::fixed(auth), false, limits, Log::Discard) };
    let start = |repo: &'static str| {
        let t = &t;
        async move { t.send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![]).await }
    };
    let (s, h, _) = start("a").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let first = h["location"].to_str().unwrap().to_string();
    assert_eq!(start("a").await.0, StatusCode::ACCEPTED);
    let (s, _, b) = start("a").await;
    assert_eq!((s, code(&b)), (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS".to_string()));
    assert_eq!(start("b").await.0, StatusCode::ACCEPTED);
    assert_eq!(start("b").await.0, StatusCode::TOO_MANY_REQUESTS, "three in total");
    assert_eq!(t.send("DELETE", &first, &[], vec![]).await.0, StatusCode::NO_CONTENT);
    assert_eq!(start("b").await.0, StatusCode::ACCEPTED, "a cancelled session frees its place");
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let t = T::new(false);
    assert_eq!(t.send("GET", "/v3/", &[], vec![]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.send("GET", "/v2/a/nothing", &[], vec![]).await.0, StatusCode::NOT_FOUND);
    let (s, _, b) = t.send("POST", "/v2/a/tags/list", &[], vec![]).await;
    assert_eq!((s, code(&b)), (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".to_string()));
}

#[tokio::test]
async fn an_upload_survives_a_restart() {
    let t = T::new(false);
    let (_, h, _) = t.send("POST", "/v2/r/blobs/uploads/", &[], vec![]).await;
    let loc = h["location"].to_str().unwrap().to_string();
    assert_eq!(t.send("PATCH", &loc, &[("content-range", "0-2")], b"abc".to_vec()).await.0, StatusCode::ACCEPTED);
    // A new server on the same storage has no running hash: it re-reads the bytes.
    let storage = Storage::open(&t.dir.path().join("storage")).unwrap();
    let auth = Htpasswd::parse(&format!("user:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let t2 = T { dir: tempfile::tempdir().unwrap(), app: App::new(storage, auth, false) };
    let (s, h, _) = t2.send("GET", &loc, &[], vec![]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h["range"], "0-2");
    assert_eq!(t2.send("PATCH", &loc, &[("content-range", "3-5")], b"def".to_vec()).await.0, StatusCode::ACCEPTED);
    let d = Digest::of(b"abcdef");
    assert_eq!(t2.send("PUT", &format!("{loc}?digest={d}"), &[], vec![]).await.0, StatusCode::CREATED);
    let (_, _, b) = t2.send("GET", &format!("/v2/r/blobs/{d}"), &[], vec![]).await;
    assert_eq!(&b[..], b"abcdef");
}

/// A read-only user pulls (GET and HEAD) and every write it tries is 403 DENIED in the OCI
/// envelope; a read-write user's writes go through.
#[tokio::test]
async fn read_only_users_may_pull_but_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("storage")).unwrap();
    let text = format!("user:{}\nreader:{}\n", bcrypt::hash("pw", 4).unwrap(), bcrypt::hash("rpw", 4).unwrap());
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, text).unwrap();
    std::fs::write(dir.path().join("roles.json"), r#"{"version":1,"users":{"reader":"read-only"}}"#).unwrap();
    let auth = Credentials::open(&htpasswd).unwrap();
    let t = T { dir, app: App::with(storage, auth, false, Limits::default(), Log::Discard) };
    let (s, h, _) = t.send("POST", "/v2/r/blobs/uploads/", &[], vec![]).await;
    assert_eq!(s, StatusCode::ACCEPTED, "the read-write user uploads");
    let upload = h["location"].to_str().unwrap().to_string();
    let reader = basic("reader", "rpw");
    for (method, path) in [("GET", "/v2/"), ("HEAD", "/v2/"), ("GET", "/v2/_catalog"), ("GET", "/v2/r/tags/list")] {
        let status = t.send_as(Some(&reader), method, path, &[], vec![]).await.0;
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "{method} {path}: {status}");
    }
    let blob = Digest::of(b"x");
    for (method, path) in [
        ("POST", "/v2/r/blobs/uploads/".to_string()),
        ("PATCH", upload.clone()),
        ("PUT", format!("{upload}?digest={blob}")),
        ("DELETE", upload.clone()),
        ("PUT", "/v2/r/manifests/v1".to_string()),
        ("DELETE", format!("/v2/r/blobs/{blob}")),
    ] {
        let (status, _, body) = t.send_as(Some(&reader), method, &path, &[], b"x".to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["errors"][0]["code"], "DENIED", "{method} {path}: {doc}");
    }
    // The upload the reader could not touch is still there for its owner.
    assert_eq!(t.send("GET", &upload, &[], vec![]).await.0, StatusCode::NO_CONTENT);
}
