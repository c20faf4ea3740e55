//! The embedded registry against the OCI distribution specification, workflow by workflow
//! as its conformance suite groups them (pull, push, content discovery, content
//! management), plus authentication, `--read-only` and malformed input. Every check is a
//! real HTTPS request to a real `airlift serve` started for the test.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::registry::{
    assert_error, digest_of, error_codes, header, manifest_for, send, tree, with_query, Image, Registry, OCI_CONFIG,
    OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
use crate::common::{noise, sha256_hex};

/// A digest of bytes nobody pushed.
fn unknown_digest() -> String {
    digest_of(b"nobody pushed this")
}

/// Files in storage named by a sha256 hex digest (the committed blobs, wherever the layout
/// keeps them).
fn blob_files(storage: &std::path::Path) -> Vec<String> {
    tree(storage)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or("");
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

fn json_body(r: reqwest::blocking::Response) -> Value {
    let status = r.status();
    let body = r.bytes().unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

// ---------------------------------------------------------------------------------------
// Pull

#[test]
fn api_version_check_answers_200_with_credentials_and_names_the_api() {
    let reg = Registry::start();
    let r = reg.get("/v2/");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-distribution-api-version").as_deref(), Some("registry/2.0"));
    let r = send(reg.anon(Method::GET, "/v2/"));
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "docker-distribution-api-version").as_deref(), Some("registry/2.0"));
}

#[test]
fn manifest_get_and_head_by_tag_and_by_digest() {
    let reg = Registry::start();
    let img = Image::new(1, &[3000, 70_000]);
    reg.push_image("team/app", "v1", &img);
    let digest = img.digest();
    for reference in ["v1", digest.as_str()] {
        let path = format!("/v2/team/app/manifests/{reference}");
        let r = send(reg.req(Method::GET, &path).header("accept", OCI_MANIFEST));
        assert_eq!(r.status(), 200, "GET {path}");
        assert_eq!(header(&r, "docker-content-digest"), Some(digest.clone()), "GET {path}: Docker-Content-Digest");
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST), "GET {path}: Content-Type");
        assert_eq!(header(&r, "content-length"), Some(img.manifest.len().to_string()), "GET {path}: Content-Length");
        assert_eq!(r.bytes().unwrap()[..], img.manifest[..], "GET {path}: body");

        let r = send(reg.req(Method::HEAD, &path).header("accept", OCI_MANIFEST));
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert_eq!(header(&r, "docker-content-digest"), Some(digest.clone()), "HEAD {path}: Docker-Content-Digest");
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST), "HEAD {path}: Content-Type");
        assert_eq!(header(&r, "content-length"), Some(img.manifest.len().to_string()), "HEAD {path}: Content-Length");
        assert!(r.bytes().unwrap().is_empty(), "HEAD {path} has a body");
    }
    // Without an Accept header the manifest is still served, as stored.
    let r = reg.get("/v2/team/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], img.manifest[..]);
}

#[test]
fn blob_get_head_and_range_requests() {
    let reg = Registry::start();
    let data = noise(7, 100_000);
    let d = reg.push_blob("r", &data);
    let path = format!("/v2/r/blobs/{d}");

    let r = reg.get(&path);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert_eq!(header(&r, "content-length").as_deref(), Some("100000"));
    assert_eq!(r.bytes().unwrap()[..], data[..]);

    let r = reg.head(&path);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert_eq!(header(&r, "content-length").as_deref(), Some("100000"));
    assert!(r.bytes().unwrap().is_empty(), "HEAD blob has a body");

    // A range inside the blob.
    let r = send(reg.req(Method::GET, &path).header("range", "bytes=10-99"));
    assert_eq!(r.status(), 206, "Range: bytes=10-99");
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 10-99/100000"));
    assert_eq!(header(&r, "content-length").as_deref(), Some("90"));
    assert_eq!(r.bytes().unwrap()[..], data[10..100]);

    // An open-ended range: from an offset to the end (how a resumed pull asks).
    let r = send(reg.req(Method::GET, &path).header("range", "bytes=99000-"));
    assert_eq!(r.status(), 206, "Range: bytes=99000-");
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 99000-99999/100000"));
    assert_eq!(r.bytes().unwrap()[..], data[99_000..]);

    // A suffix range: the last N bytes.
    let r = send(reg.req(Method::GET, &path).header("range", "bytes=-10"));
    assert_eq!(r.status(), 206, "Range: bytes=-10");
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 99990-99999/100000"));
    assert_eq!(r.bytes().unwrap()[..], data[99_990..]);

    // A range past the end extends to the last byte (RFC 9110 14.1.2).
    let r = send(reg.req(Method::GET, &path).header("range", "bytes=99990-200000"));
    assert_eq!(r.status(), 206, "Range: bytes=99990-200000");
    assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 99990-99999/100000"));
    assert_eq!(r.bytes().unwrap()[..], data[99_990..]);

    // Unsatisfiable: starts at or past the end.
    for range in ["bytes=100000-", "bytes=100000-100010", "bytes=200000-300000"] {
        let r = send(reg.req(Method::GET, &path).header("range", range));
        assert_eq!(r.status(), 416, "Range: {range}");
        assert_eq!(header(&r, "content-range").as_deref(), Some("bytes */100000"), "Range: {range}");
    }
}

#[test]
fn unknown_manifests_and_blobs_are_404_with_an_error_envelope() {
    let reg = Registry::start();
    let img = Image::new(2, &[100]);
    reg.push_image("known", "v1", &img);
    let unknown = unknown_digest();

    assert_error(reg.get("/v2/known/manifests/nope"), 404, "MANIFEST_UNKNOWN", "GET unknown tag");
    assert_error(
        reg.get(&format!("/v2/known/manifests/{unknown}")),
        404,
        "MANIFEST_UNKNOWN",
        "GET unknown manifest digest",
    );
    assert_error(reg.get(&format!("/v2/known/blobs/{unknown}")), 404, "BLOB_UNKNOWN", "GET unknown blob");
    for path in [format!("/v2/known/manifests/{unknown}"), format!("/v2/known/blobs/{unknown}")] {
        let r = reg.head(&path);
        assert_eq!(r.status(), 404, "HEAD {path}");
        assert!(r.bytes().unwrap().is_empty(), "HEAD {path} has a body");
    }
    // An unknown repository.
    let r = reg.get("/v2/nowhere/manifests/v1");
    assert_eq!(r.status(), 404);
    let codes = error_codes(&r.bytes().unwrap());
    assert!(
        codes.iter().any(|c| c == "NAME_UNKNOWN" || c == "MANIFEST_UNKNOWN"),
        "GET manifest of an unknown repository: {codes:?}"
    );
    let r = reg.get(&format!("/v2/nowhere/blobs/{}", digest_of(&img.config)));
    assert_eq!(r.status(), 404, "a blob of `known` is not visible through an unknown repository");
}

// ---------------------------------------------------------------------------------------
// Push

#[test]
fn monolithic_upload_post_then_put() {
    let reg = Registry::start();
    let data = noise(11, 50_000);
    let d = digest_of(&data);
    let r = send(reg.req(Method::POST, "/v2/mono/blobs/uploads/"));
    assert_eq!(r.status(), 202, "POST uploads/");
    let loc = reg.location(&r);
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_eq!(r.status(), 201, "PUT upload");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    let blob_loc = reg.location(&r);
    assert!(blob_loc.ends_with(&format!("/v2/mono/blobs/{d}")), "Location of the blob: {blob_loc}");
    let r = send(reg.req(Method::GET, &blob_loc));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], data[..]);
    // The session is gone once the blob is committed.
    let r = send(reg.req(Method::GET, &loc));
    assert_eq!(r.status(), 404, "upload status after commit");
    let r =
        send(reg.req(Method::PATCH, &loc).header("content-type", "application/octet-stream").body(b"more".to_vec()));
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN", "PATCH after the upload was committed");
}

#[test]
fn single_request_upload_post_with_digest() {
    let reg = Registry::start();
    let data = noise(12, 30_000);
    let d = digest_of(&data);
    let r = send(
        reg.req(Method::POST, &format!("/v2/single/blobs/uploads/?digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_eq!(r.status(), 201, "POST uploads/?digest=");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert!(reg.location(&r).ends_with(&format!("/v2/single/blobs/{d}")));
    let r = reg.get(&format!("/v2/single/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], data[..]);
}

#[test]
fn chunked_upload_in_several_patches_then_put_with_the_last_chunk() {
    let reg = Registry::start();
    let data = noise(13, 250_000);
    let d = digest_of(&data);
    let chunks: Vec<(usize, usize)> = vec![(0, 100_000), (100_000, 150_001), (150_001, 200_000)];
    let mut loc = reg.start_upload("chunked");
    for &(start, end) in &chunks {
        let r = send(
            reg.req(Method::PATCH, &loc)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{}", end - 1))
                .body(data[start..end].to_vec()),
        );
        assert_eq!(r.status(), 202, "PATCH {start}-{}", end - 1);
        assert_eq!(header(&r, "range"), Some(format!("0-{}", end - 1)), "Range after PATCH {start}-{}", end - 1);
        loc = reg.location(&r);

        // The upload's status.
        let r = send(reg.req(Method::GET, &loc));
        assert_eq!(r.status(), 204, "GET upload status");
        assert_eq!(header(&r, "range"), Some(format!("0-{}", end - 1)), "status Range");
        assert!(header(&r, "location").is_some(), "status has a Location");
        loc = reg.location(&r);
    }
    // Final chunk with the PUT.
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("200000-{}", data.len() - 1))
            .body(data[200_000..].to_vec()),
    );
    assert_eq!(r.status(), 201, "PUT final chunk");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    let r = reg.get(&format!("/v2/chunked/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], data[..]);

    // PATCHes without Content-Range (streamed) followed by an empty PUT.
    let data2 = noise(14, 70_000);
    let d2 = digest_of(&data2);
    let mut loc = reg.start_upload("chunked");
    for part in data2.chunks(30_000) {
        let r =
            send(reg.req(Method::PATCH, &loc).header("content-type", "application/octet-stream").body(part.to_vec()));
        assert_eq!(r.status(), 202, "streamed PATCH");
        loc = reg.location(&r);
    }
    let r = send(reg.req(Method::PUT, &with_query(&loc, &format!("digest={d2}"))));
    assert_eq!(r.status(), 201, "empty PUT closing a streamed upload");
    assert_eq!(reg.get(&format!("/v2/chunked/blobs/{d2}")).bytes().unwrap()[..], data2[..]);
}

#[test]
fn out_of_order_patch_is_416_and_leaves_the_upload_usable() {
    let reg = Registry::start();
    let data = noise(15, 2000);
    let d = digest_of(&data);
    let loc = reg.start_upload("ooo");
    let r = send(
        reg.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", "1000-1999")
            .body(data[1000..].to_vec()),
    );
    assert_eq!(r.status(), 416, "PATCH 1000-1999 on an empty upload");

    // First chunk in order, then the same chunk again (overlap) and a gap: both 416.
    let r = send(
        reg.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-999")
            .body(data[..1000].to_vec()),
    );
    assert_eq!(r.status(), 202, "in-order PATCH after a refused one");
    let loc = reg.location(&r);
    for range in ["0-999", "1500-1999"] {
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let r = send(
            reg.req(Method::PATCH, &loc)
                .header("content-type", "application/octet-stream")
                .header("content-range", range)
                .body(data[a..=b].to_vec()),
        );
        assert_eq!(r.status(), 416, "PATCH {range} after 0-999");
    }
    let r = send(reg.req(Method::GET, &loc));
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range").as_deref(), Some("0-999"), "refused chunks were not written");
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(data[1000..].to_vec()),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(reg.get(&format!("/v2/ooo/blobs/{d}")).bytes().unwrap()[..], data[..]);
}

#[test]
fn put_with_a_wrong_digest_is_digest_invalid_and_stores_nothing() {
    let reg = Registry::start();
    let data = noise(16, 40_000);
    let claimed = digest_of(b"something else");
    let real = digest_of(&data);
    let loc = reg.start_upload("wrong");
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={claimed}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_error(r, 400, "DIGEST_INVALID", "PUT with a digest that does not match the bytes");
    for d in [&claimed, &real] {
        assert_eq!(reg.head(&format!("/v2/wrong/blobs/{d}")).status(), 404, "HEAD {d} after a refused PUT");
    }
    // Same through the single-request POST.
    let r = send(
        reg.req(Method::POST, &format!("/v2/wrong/blobs/uploads/?digest={claimed}"))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_error(r, 400, "DIGEST_INVALID", "POST ?digest= with a digest that does not match the bytes");
    for d in [&claimed, &real] {
        assert_eq!(reg.head(&format!("/v2/wrong/blobs/{d}")).status(), 404, "HEAD {d} after a refused POST");
    }
    // No blob file with either name anywhere in storage.
    for p in tree(&reg.storage()) {
        assert!(!p.contains(&sha256_hex(&data)) && !p.contains(&claimed[7..]), "left behind in storage: {p}");
    }
}

#[test]
fn cross_repository_mount() {
    let reg = Registry::start();
    let data = noise(17, 20_000);
    let d = reg.push_blob("src/repo", &data);

    let r = send(reg.req(Method::POST, &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo")));
    assert_eq!(r.status(), 201, "mount from a repository that has the blob");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert!(reg.location(&r).ends_with(&format!("/v2/dst/repo/blobs/{d}")), "mount Location");
    let r = reg.get(&format!("/v2/dst/repo/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap()[..], data[..]);

    // A repository that lacks the blob: no mount, an upload session instead.
    let other = noise(18, 5000);
    let od = digest_of(&other);
    reg.push_blob("lacking", b"unrelated");
    let r = send(reg.req(Method::POST, &format!("/v2/third/blobs/uploads/?mount={od}&from=lacking")));
    assert_eq!(r.status(), 202, "mount from a repository that lacks the blob");
    let loc = reg.location(&r);
    assert_eq!(reg.head(&format!("/v2/third/blobs/{od}")).status(), 404);
    // The session it opened works.
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={od}")))
            .header("content-type", "application/octet-stream")
            .body(other.clone()),
    );
    assert_eq!(r.status(), 201, "PUT into the session a failed mount opened");
    assert_eq!(reg.get(&format!("/v2/third/blobs/{od}")).bytes().unwrap()[..], other[..]);

    // The blob exists in the registry but not in `from`: still no mount.
    let r = send(reg.req(Method::POST, &format!("/v2/fourth/blobs/uploads/?mount={d}&from=lacking")));
    assert_eq!(r.status(), 202, "mount naming a repository that does not hold the blob");
    assert_eq!(reg.head(&format!("/v2/fourth/blobs/{d}")).status(), 404);
}

#[test]
fn manifest_put_by_tag_and_by_digest() {
    let reg = Registry::start();
    let img = Image::new(3, &[1000, 2000]);
    for b in img.blobs() {
        reg.push_blob("m", b);
    }
    let d = img.digest();
    let r = reg.put_manifest("m", "v1", OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), 201, "PUT by tag");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert!(header(&r, "location").is_some(), "PUT manifest has a Location");

    let r = reg.put_manifest("m", &d, OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), 201, "PUT by digest");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    assert_eq!(reg.get(&format!("/v2/m/manifests/{d}")).bytes().unwrap()[..], img.manifest[..]);

    // By a digest that is not the body's.
    let r = reg.put_manifest("m", &unknown_digest(), OCI_MANIFEST, &img.manifest);
    assert_error(r, 400, "DIGEST_INVALID", "PUT manifest by a digest that does not match");
    assert_eq!(reg.get(&format!("/v2/m/manifests/{}", unknown_digest())).status(), 404);

    // A tag moves when another manifest is put under it.
    let img2 = Image::new(4, &[500]);
    for b in img2.blobs() {
        reg.push_blob("m", b);
    }
    assert_eq!(reg.put_manifest("m", "v1", OCI_MANIFEST, &img2.manifest).status(), 201);
    let r = reg.get("/v2/m/manifests/v1");
    assert_eq!(header(&r, "docker-content-digest"), Some(img2.digest()));
    assert_eq!(r.bytes().unwrap()[..], img2.manifest[..]);
    // The first manifest is still there by digest.
    assert_eq!(reg.get(&format!("/v2/m/manifests/{d}")).status(), 200);

    // Not JSON at all.
    let r = reg.put_manifest("m", "junk", OCI_MANIFEST, b"this is not a manifest");
    assert_error(r, 400, "MANIFEST_INVALID", "PUT of a body that is not JSON");
    assert_eq!(reg.get("/v2/m/manifests/junk").status(), 404);
}

#[test]
fn manifest_referencing_a_missing_blob_is_manifest_blob_unknown() {
    let reg = Registry::start();
    let img = Image::new(5, &[1000, 2000]);
    // Config and first layer present, second layer missing.
    reg.push_blob("miss", &img.config);
    reg.push_blob("miss", &img.layers[0]);
    let r = reg.put_manifest("miss", "v1", OCI_MANIFEST, &img.manifest);
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN", "manifest with a missing layer");
    assert_eq!(reg.get("/v2/miss/manifests/v1").status(), 404, "refused manifest is not served by tag");
    assert_eq!(reg.get(&format!("/v2/miss/manifests/{}", img.digest())).status(), 404, "nor by digest");

    // The missing blob exists, but in another repository only.
    reg.push_blob("elsewhere", &img.layers[1]);
    let r = reg.put_manifest("miss", "v1", OCI_MANIFEST, &img.manifest);
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN", "manifest whose layer is only in another repository");

    // Missing config.
    let img2 = Image::new(6, &[100]);
    reg.push_blob("miss", &img2.layers[0]);
    let r = reg.put_manifest("miss", "v2", OCI_MANIFEST, &img2.manifest);
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN", "manifest with a missing config");

    // Once the blob is there the same manifest is accepted.
    reg.push_blob("miss", &img.layers[1]);
    assert_eq!(reg.put_manifest("miss", "v1", OCI_MANIFEST, &img.manifest).status(), 201);
}

#[test]
fn a_manifest_of_4_mb_is_accepted_and_returned_byte_identical() {
    let reg = Registry::start();
    let img = Image::new(7, &[100]);
    for b in img.blobs() {
        reg.push_blob("big", b);
    }
    // Many annotations, and a layout serde would not reproduce (indentation, key order),
    // so only byte-for-byte storage returns the same digest.
    let mut annotations = String::new();
    let mut i: u32 = 0;
    while annotations.len() < 4_100_000 {
        if i > 0 {
            annotations.push_str(",\n");
        }
        annotations.push_str(&format!("    \"org.example.k{i:06}\" :  \"{}\"", sha256_hex(&i.to_le_bytes()).repeat(2)));
        i += 1;
    }
    let layer = &img.layers[0];
    let manifest = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{ \"mediaType\": \"{OCI_CONFIG}\", \"size\": {}, \"digest\": \"{}\" }},\n  \"layers\": [ {{ \"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"{}\", \"size\": {} }} ],\n  \"annotations\": {{\n{annotations}\n  }}\n}}\n",
        img.config.len(),
        digest_of(&img.config),
        digest_of(layer),
        layer.len()
    )
    .into_bytes();
    assert!(manifest.len() > 4_000_000 && manifest.len() < 4 * 1024 * 1024, "{}", manifest.len());
    let d = digest_of(&manifest);
    let r = reg.put_manifest("big", "annotated", OCI_MANIFEST, &manifest);
    assert_eq!(r.status(), 201, "PUT of a {} byte manifest", manifest.len());
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    for reference in ["annotated", d.as_str()] {
        let r = reg.get(&format!("/v2/big/manifests/{reference}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
        let body = r.bytes().unwrap();
        assert!(
            body[..] == manifest[..],
            "GET {reference}: {} bytes back, not the {} pushed",
            body.len(),
            manifest.len()
        );
    }
}

#[test]
fn an_index_with_child_manifests() {
    let reg = Registry::start();
    let amd = Image::new(8, &[1000]);
    let arm = Image::new(9, &[1200]);
    reg.push_image("multi", &amd.digest(), &amd);
    reg.push_image("multi", &arm.digest(), &arm);
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd.descriptor(Some(("linux", "amd64"))), arm.descriptor(Some(("linux", "arm64")))],
    }))
    .unwrap();
    let d = digest_of(&index);
    let r = reg.put_manifest("multi", "latest", OCI_INDEX, &index);
    assert_eq!(r.status(), 201, "PUT index");
    assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
    for reference in ["latest", d.as_str()] {
        let r = send(reg.req(Method::GET, &format!("/v2/multi/manifests/{reference}")).header("accept", OCI_INDEX));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
        assert_eq!(header(&r, "docker-content-digest"), Some(d.clone()));
        assert_eq!(r.bytes().unwrap()[..], index[..]);
    }
    // Children pulled by the digests the index names.
    reg.check_image("multi", &amd.digest(), &amd);
    reg.check_image("multi", &arm.digest(), &arm);
}

// ---------------------------------------------------------------------------------------
// Content discovery

/// Follow `Link: <...>; rel="next"` pages; returns the items of every page.
fn paginate(reg: &Registry, first: &str, key: &str) -> (Vec<String>, usize) {
    let mut url = first.to_string();
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let r = reg.get(&url);
        assert_eq!(r.status(), 200, "GET {url}");
        let link = header(&r, "link");
        let v = json_body(r);
        let page: Vec<String> =
            v[key].as_array().unwrap_or(&Vec::new()).iter().map(|t| t.as_str().unwrap().to_string()).collect();
        items.extend(page);
        pages += 1;
        assert!(pages < 100, "pagination does not end");
        match link {
            None => return (items, pages),
            Some(link) => {
                assert!(link.contains("rel=\"next\""), "Link header: {link}");
                let start = link.find('<').expect("Link <url>") + 1;
                let end = link.find('>').expect("Link <url>");
                url = link[start..end].to_string();
            }
        }
    }
}

#[test]
fn tags_list_paginates_with_n_and_last_and_a_link_header() {
    let reg = Registry::start();
    let img = Image::new(10, &[100]);
    let tags = ["latest", "1.0", "b", "a", "2.0-rc1", "c_1"];
    for b in img.blobs() {
        reg.push_blob("tagged/repo", b);
    }
    for t in tags {
        assert_eq!(reg.put_manifest("tagged/repo", t, OCI_MANIFEST, &img.manifest).status(), 201);
    }
    let mut sorted: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    sorted.sort();

    let v = json_body(reg.get("/v2/tagged/repo/tags/list"));
    assert_eq!(v["name"], "tagged/repo");
    let all: Vec<String> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    assert_eq!(all, sorted, "tags in lexical order");

    let r = reg.get("/v2/tagged/repo/tags/list?n=2");
    assert!(header(&r, "link").is_some(), "a truncated page has a Link header");
    let v = json_body(r);
    assert_eq!(v["tags"].as_array().unwrap().len(), 2);
    assert_eq!(v["tags"][0], sorted[0].as_str());
    assert_eq!(v["tags"][1], sorted[1].as_str());

    let v = json_body(reg.get(&format!("/v2/tagged/repo/tags/list?n=2&last={}", sorted[1])));
    let page: Vec<&str> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(page, [sorted[2].as_str(), sorted[3].as_str()], "the page after `last`");

    let v = json_body(reg.get(&format!("/v2/tagged/repo/tags/list?last={}", sorted[3])));
    let page: Vec<&str> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(page, [sorted[4].as_str(), sorted[5].as_str()], "everything after `last`");

    let (followed, pages) = paginate(&reg, "/v2/tagged/repo/tags/list?n=4", "tags");
    assert_eq!(followed, sorted, "following Link headers yields every tag once");
    assert_eq!(pages, 2);
    let (followed, _) = paginate(&reg, "/v2/tagged/repo/tags/list?n=1", "tags");
    assert_eq!(followed, sorted);

    // An unknown repository.
    assert_error(reg.get("/v2/no/such/tags/list"), 404, "NAME_UNKNOWN", "tags of an unknown repository");
}

#[test]
fn catalog_paginates_with_n_and_last_and_a_link_header() {
    let reg = Registry::start();
    let img = Image::new(11, &[100]);
    let repos = ["zeta", "alpha", "team/app", "team/app/sub", "beta-1"];
    for repo in repos {
        reg.push_image(repo, "v1", &img);
    }
    let mut sorted: Vec<String> = repos.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    let v = json_body(reg.get("/v2/_catalog"));
    let all: Vec<String> =
        v["repositories"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    assert_eq!(all, sorted);

    let r = reg.get("/v2/_catalog?n=2");
    assert!(header(&r, "link").is_some(), "a truncated catalog page has a Link header");
    let v = json_body(r);
    assert_eq!(v["repositories"].as_array().unwrap().len(), 2);

    let v = json_body(reg.get(&format!("/v2/_catalog?last={}", sorted[2])));
    let page: Vec<&str> = v["repositories"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(page, [sorted[3].as_str(), sorted[4].as_str()]);

    let (followed, pages) = paginate(&reg, "/v2/_catalog?n=2", "repositories");
    assert_eq!(followed, sorted);
    assert_eq!(pages, 3);
    // `last` need not be a repository: the page starts after it in lexical order.
    let v = json_body(reg.get("/v2/_catalog?last=b"));
    let page: Vec<&str> = v["repositories"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let want: Vec<&str> = sorted.iter().map(String::as_str).filter(|r| *r > "b").collect();
    assert_eq!(page, want);
    // A page size larger than the catalog: everything, no Link.
    let r = reg.get("/v2/_catalog?n=100");
    assert!(header(&r, "link").is_none(), "Link header on the last page");
    assert_eq!(json_body(r)["repositories"].as_array().unwrap().len(), sorted.len());
}

#[test]
fn referrers_are_listed_and_filtered_by_artifact_type() {
    let reg = Registry::start();
    let subject = Image::new(12, &[100]);
    reg.push_image("ref", "v1", &subject);
    let sd = subject.digest();
    let empty = b"{}".to_vec();
    let empty_d = reg.push_blob("ref", &empty);
    assert_eq!(empty_d, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    let sbom = b"{\"sbom\":true}".to_vec();
    reg.push_blob("ref", &sbom);
    let sig_config = b"{\"signature\":1}".to_vec();
    reg.push_blob("ref", &sig_config);
    let subject_desc = json!({ "mediaType": OCI_MANIFEST, "digest": sd, "size": subject.manifest.len() });

    // A: artifactType set, empty config.
    let a = manifest_for(
        &empty,
        OCI_EMPTY,
        std::slice::from_ref(&sbom),
        Some(json!({ "artifactType": "application/vnd.example.sbom.v1", "subject": subject_desc,
                     "annotations": { "org.example.kind": "sbom" } })),
    );
    // B: no artifactType, the config's media type stands for it.
    let b = manifest_for(
        &sig_config,
        "application/vnd.example.signature.v1",
        std::slice::from_ref(&empty),
        Some(json!({ "subject": subject_desc, "annotations": { "org.example.kind": "sig" } })),
    );
    for m in [&a, &b] {
        let r = reg.put_manifest("ref", &digest_of(m), OCI_MANIFEST, m);
        assert_eq!(r.status(), 201, "PUT referrer");
        assert_eq!(header(&r, "oci-subject"), Some(sd.clone()), "PUT of a manifest with a subject answers OCI-Subject");
    }

    let r = reg.get(&format!("/v2/ref/referrers/{sd}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none(), "no filter asked, none applied");
    let v = json_body(r);
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2, "two referrers: {v}");
    let find =
        |d: &str| list.iter().find(|x| x["digest"] == d).unwrap_or_else(|| panic!("{d} not listed: {v}")).clone();
    let da = find(&digest_of(&a));
    assert_eq!(da["mediaType"], OCI_MANIFEST);
    assert_eq!(da["size"], a.len());
    assert_eq!(da["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(da["annotations"]["org.example.kind"], "sbom");
    let db = find(&digest_of(&b));
    assert_eq!(db["artifactType"], "application/vnd.example.signature.v1", "artifactType from the config's media type");
    assert_eq!(db["size"], b.len());
    assert_eq!(db["annotations"]["org.example.kind"], "sig");

    let r = reg.get(&format!("/v2/ref/referrers/{sd}?artifactType=application/vnd.example.sbom.v1"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "oci-filters-applied").as_deref(), Some("artifactType"));
    let v = json_body(r);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "filtered: {v}");
    assert_eq!(list[0]["digest"], digest_of(&a));

    // A subject nobody refers to: an empty index, not a 404.
    let r = reg.get(&format!("/v2/ref/referrers/{}", unknown_digest()));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert_eq!(json_body(r)["manifests"].as_array().map(|a| a.len()), Some(0));

    // A referrer pushed before its subject exists is listed too.
    let later = Image::new(13, &[50]);
    let c = manifest_for(
        &empty,
        OCI_EMPTY,
        std::slice::from_ref(&sbom),
        Some(json!({ "artifactType": "application/vnd.example.sbom.v1",
                     "subject": { "mediaType": OCI_MANIFEST, "digest": later.digest(), "size": later.manifest.len() } })),
    );
    let r = reg.put_manifest("ref", &digest_of(&c), OCI_MANIFEST, &c);
    assert_eq!(r.status(), 201, "PUT of a referrer whose subject is not there yet");
    assert_eq!(header(&r, "oci-subject"), Some(later.digest()));
    let v = json_body(reg.get(&format!("/v2/ref/referrers/{}", later.digest())));
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{v}");

    // Deleting a referrer removes it from the list.
    assert_eq!(reg.delete(&format!("/v2/ref/manifests/{}", digest_of(&b))).status(), 202);
    let v = json_body(reg.get(&format!("/v2/ref/referrers/{sd}")));
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "after deleting one referrer: {v}");
}

// ---------------------------------------------------------------------------------------
// Content management

#[test]
fn delete_manifest_by_digest_then_404() {
    let reg = Registry::start();
    let img = Image::new(14, &[100]);
    reg.push_image("del", "v1", &img);
    let d = img.digest();
    let r = reg.delete(&format!("/v2/del/manifests/{d}"));
    assert_eq!(r.status(), 202, "DELETE manifest by digest");
    assert_error(reg.get(&format!("/v2/del/manifests/{d}")), 404, "MANIFEST_UNKNOWN", "GET deleted manifest");
    assert_eq!(reg.head(&format!("/v2/del/manifests/{d}")).status(), 404);
    assert_eq!(reg.get("/v2/del/manifests/v1").status(), 404, "the tag of a deleted manifest");
    let r = reg.delete(&format!("/v2/del/manifests/{d}"));
    assert_error(r, 404, "MANIFEST_UNKNOWN", "DELETE of a manifest already deleted");
}

#[test]
fn delete_tag_if_supported() {
    let reg = Registry::start();
    let img = Image::new(15, &[100]);
    reg.push_image("deltag", "v1", &img);
    assert_eq!(reg.put_manifest("deltag", "v2", OCI_MANIFEST, &img.manifest).status(), 201);
    let r = reg.delete("/v2/deltag/manifests/v1");
    let status = r.status().as_u16();
    if status == 202 {
        assert_eq!(reg.get("/v2/deltag/manifests/v1").status(), 404, "deleted tag");
        assert_eq!(reg.get("/v2/deltag/manifests/v2").status(), 200, "the other tag stays");
        assert_eq!(reg.get(&format!("/v2/deltag/manifests/{}", img.digest())).status(), 200, "the manifest stays");
        let v = json_body(reg.get("/v2/deltag/tags/list"));
        assert_eq!(v["tags"], json!(["v2"]));
    } else {
        // Not supported: the spec allows 400 or 405 with UNSUPPORTED, and nothing changes.
        assert!(status == 400 || status == 405, "DELETE tag: {status}");
        assert!(error_codes(&r.bytes().unwrap()).iter().any(|c| c == "UNSUPPORTED"));
        assert_eq!(reg.get("/v2/deltag/manifests/v1").status(), 200);
    }
}

#[test]
fn delete_blob_then_404() {
    let reg = Registry::start();
    let data = noise(19, 1000);
    let d = reg.push_blob("delblob", &data);
    let r = reg.delete(&format!("/v2/delblob/blobs/{d}"));
    assert_eq!(r.status(), 202, "DELETE blob");
    assert_eq!(reg.head(&format!("/v2/delblob/blobs/{d}")).status(), 404);
    assert_error(reg.get(&format!("/v2/delblob/blobs/{d}")), 404, "BLOB_UNKNOWN", "GET deleted blob");
    assert_error(reg.delete(&format!("/v2/delblob/blobs/{d}")), 404, "BLOB_UNKNOWN", "DELETE deleted blob");
}

#[test]
fn cancel_an_upload_then_its_status_is_404() {
    let reg = Registry::start();
    let data = noise(20, 5000);
    let loc = reg.start_upload("cancel");
    let r = send(reg.req(Method::PATCH, &loc).header("content-type", "application/octet-stream").body(data.clone()));
    assert_eq!(r.status(), 202);
    let loc = reg.location(&r);
    let r = send(reg.req(Method::DELETE, &loc));
    assert_eq!(r.status(), 204, "DELETE upload");
    assert_error(send(reg.req(Method::GET, &loc)), 404, "BLOB_UPLOAD_UNKNOWN", "status of a cancelled upload");
    let r = send(
        reg.req(Method::PUT, &with_query(&loc, &format!("digest={}", digest_of(&data))))
            .header("content-type", "application/octet-stream")
            .body(Vec::new()),
    );
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN", "PUT to a cancelled upload");
    assert_eq!(reg.head(&format!("/v2/cancel/blobs/{}", digest_of(&data))).status(), 404);
}

// ---------------------------------------------------------------------------------------
// Authentication and --read-only

#[test]
fn missing_or_wrong_credentials_are_401_with_a_basic_challenge() {
    // 18 wrong logins from one address: more than the failed-login limiter lets through
    // (429 then, tests/abuse.rs), so it is widened here.
    let mut reg = Registry::install();
    reg.serve(&["--login-burst", "100"]);
    let img = Image::new(21, &[100]);
    reg.push_image("auth", "v1", &img);
    let blob = digest_of(&img.config);
    let requests: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/".into()),
        (Method::GET, "/v2/auth/manifests/v1".into()),
        (Method::HEAD, "/v2/auth/manifests/v1".into()),
        (Method::GET, format!("/v2/auth/blobs/{blob}")),
        (Method::GET, "/v2/auth/tags/list".into()),
        (Method::GET, "/v2/_catalog".into()),
        (Method::POST, "/v2/auth/blobs/uploads/".into()),
        (Method::PUT, "/v2/auth/manifests/v2".into()),
        (Method::DELETE, format!("/v2/auth/manifests/{}", img.digest())),
        (Method::DELETE, format!("/v2/auth/blobs/{blob}")),
    ];
    let wrong_password = (reg.user.clone(), format!("{}x", reg.password));
    let wrong_user = ("nobody".to_string(), reg.password.clone());
    for (method, path) in &requests {
        let attempts = [
            ("no credentials", reg.anon(method.clone(), path)),
            ("wrong password", reg.anon(method.clone(), path).basic_auth(&wrong_password.0, Some(&wrong_password.1))),
            ("wrong user", reg.anon(method.clone(), path).basic_auth(&wrong_user.0, Some(&wrong_user.1))),
            ("garbage header", reg.anon(method.clone(), path).header("authorization", "Basic !!!not-base64")),
            ("bearer", reg.anon(method.clone(), path).bearer_auth("token")),
        ];
        for (what, rb) in attempts {
            let rb = if *method == Method::PUT {
                rb.header("content-type", OCI_MANIFEST).body(img.manifest.clone())
            } else {
                rb
            };
            let r = send(rb);
            assert_eq!(r.status(), 401, "{method} {path} with {what}");
            let challenge = header(&r, "www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Basic ") && challenge.contains("realm="),
                "{method} {path}: WWW-Authenticate {challenge:?}"
            );
            if *method != Method::HEAD {
                let codes = error_codes(&r.bytes().unwrap());
                assert!(codes.iter().any(|c| c == "UNAUTHORIZED"), "{method} {path} with {what}: {codes:?}");
            }
        }
    }
    // Nothing was changed by the refused writes.
    reg.check_image("auth", "v1", &img);
    let v = json_body(reg.get("/v2/auth/tags/list"));
    assert_eq!(v["tags"], json!(["v1"]));
}

#[test]
fn a_read_only_server_refuses_writes_and_serves_pulls() {
    let reg = Registry::start();
    let img = Image::new(22, &[2000]);
    reg.push_image("ro", "v1", &img);
    let ro = reg.second_server(&["--read-only"]);
    ro.check_image("ro", "v1", &img);
    let v = json_body(ro.get("/v2/_catalog"));
    assert_eq!(v["repositories"], json!(["ro"]));
    // An upload session opened on the writable server, to try to finish on the read-only one.
    let loc = reg.start_upload("ro");
    let path = loc[loc.find("/v2/").unwrap()..].to_string();
    let before = tree(&reg.storage());

    let refused = |r: reqwest::blocking::Response, what: &str| {
        let status = r.status().as_u16();
        let codes = error_codes(&r.bytes().unwrap());
        assert!(status == 403 || status == 405, "{what} on a read-only server: {status}");
        assert!(codes.iter().any(|c| c == "DENIED" || c == "UNSUPPORTED"), "{what}: {codes:?}");
    };
    let other = Image::new(23, &[10]);
    refused(ro.put_manifest("ro", "v2", OCI_MANIFEST, &img.manifest), "PUT manifest");
    refused(send(ro.req(Method::POST, "/v2/ro/blobs/uploads/")), "POST upload");
    refused(
        send(
            ro.req(Method::POST, &format!("/v2/ro/blobs/uploads/?digest={}", digest_of(&other.config)))
                .header("content-type", "application/octet-stream")
                .body(other.config.clone()),
        ),
        "POST single-request upload",
    );
    refused(
        send(ro.req(Method::POST, &format!("/v2/new/blobs/uploads/?mount={}&from=ro", digest_of(&img.config)))),
        "mount",
    );
    refused(ro.delete(&format!("/v2/ro/manifests/{}", img.digest())), "DELETE manifest");
    refused(ro.delete("/v2/ro/manifests/v1"), "DELETE tag");
    refused(ro.delete(&format!("/v2/ro/blobs/{}", digest_of(&img.config))), "DELETE blob");
    refused(
        send(
            ro.req(Method::PATCH, &path).header("content-type", "application/octet-stream").body(other.config.clone()),
        ),
        "PATCH upload",
    );
    refused(
        send(
            ro.req(Method::PUT, &with_query(&path, &format!("digest={}", digest_of(&other.config))))
                .body(other.config.clone()),
        ),
        "PUT upload",
    );
    refused(send(ro.req(Method::DELETE, &path)), "DELETE upload");
    assert_eq!(tree(&reg.storage()), before, "the read-only server changed storage");
    assert_eq!(send(reg.req(Method::DELETE, &loc)).status(), 204, "the session is still there on the writable server");
    ro.check_image("ro", "v1", &img);
    reg.check_image("ro", "v1", &img);
}

// ---------------------------------------------------------------------------------------
// Malformed input

#[test]
fn malformed_digests_are_digest_invalid() {
    let reg = Registry::start();
    let img = Image::new(24, &[100]);
    reg.push_image("dg", "v1", &img);
    let before = blob_files(&reg.storage());
    let bad = [
        "sha256:zz",
        "sha256:0123",
        "sha256:XYZ0000000000000000000000000000000000000000000000000000000000000",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:",
        "sha256:../../../../etc/passwd",
    ];
    for d in bad {
        let enc = d.replace('/', "%2F");
        for method in [Method::GET, Method::HEAD, Method::DELETE] {
            let r = send(reg.req(method.clone(), &format!("/v2/dg/blobs/{enc}")));
            let status = r.status().as_u16();
            assert!(status == 400 || status == 404, "{method} blobs/{d}: {status}");
            if method != Method::HEAD {
                let codes = error_codes(&r.bytes().unwrap());
                assert!(
                    codes.iter().any(|c| c == "DIGEST_INVALID" || c == "BLOB_UNKNOWN" || c == "UNSUPPORTED"),
                    "{method} blobs/{d}: {status} {codes:?}"
                );
                assert_eq!(status, 400, "{method} blobs/{d}: a digest that cannot be one is a 400, not {status}");
            }
        }
        // Uploads naming a bad digest are refused and store nothing.
        let r = send(
            reg.req(Method::POST, &format!("/v2/dg/blobs/uploads/?digest={enc}"))
                .header("content-type", "application/octet-stream")
                .body(b"data".to_vec()),
        );
        assert_error(r, 400, "DIGEST_INVALID", &format!("POST ?digest={d}"));
        let loc = reg.start_upload("dg");
        let r = send(
            reg.req(Method::PUT, &with_query(&loc, &format!("digest={enc}")))
                .header("content-type", "application/octet-stream")
                .body(b"data".to_vec()),
        );
        assert_error(r, 400, "DIGEST_INVALID", &format!("PUT ?digest={d}"));
        send(reg.req(Method::DELETE, &loc));
        // A manifest reference with a colon is a digest or nothing.
        let r = reg.get(&format!("/v2/dg/manifests/{enc}"));
        let status = r.status().as_u16();
        let codes = error_codes(&r.bytes().unwrap());
        assert!(
            status == 400 && codes.iter().any(|c| c == "DIGEST_INVALID" || c == "MANIFEST_INVALID"),
            "GET manifests/{d}: {status} {codes:?}"
        );
        let r = reg.put_manifest("dg", &enc, OCI_MANIFEST, &img.manifest);
        assert_eq!(r.status(), 400, "PUT manifests/{d}");
    }
    // Mount with a bad digest: refused, no session, nothing mounted.
    let r = send(reg.req(Method::POST, "/v2/dg2/blobs/uploads/?mount=sha256:zz&from=dg"));
    let status = r.status().as_u16();
    assert!(status == 400 || status == 202, "mount=sha256:zz: {status}");
    if status == 202 {
        send(reg.req(Method::DELETE, &reg.location(&r)));
    }
    // A tag that is not a tag (too long, bad characters).
    let long = "a".repeat(129);
    for tag in [long.as_str(), "-lead", ".dot", "sp%20ace"] {
        let r = reg.put_manifest("dg", tag, OCI_MANIFEST, &img.manifest);
        assert_eq!(r.status(), 400, "PUT manifests/{tag}");
    }
    let v = json_body(reg.get("/v2/dg/tags/list"));
    assert_eq!(v["tags"], json!(["v1"]));
    assert_eq!(blob_files(&reg.storage()), before, "refused requests stored blobs");
    let v = json_body(reg.get("/v2/_catalog"));
    assert_eq!(v["repositories"], json!(["dg"]), "refused requests created repositories");
}

#[test]
fn malformed_repository_names_are_refused_and_create_nothing() {
    let reg = Registry::start();
    let img = Image::new(25, &[100]);
    reg.push_image("good/name", "v1", &img);
    let before = tree(&reg.storage());
    let outside_before = tree(reg.root.parent().unwrap());
    let config_d = digest_of(&img.config);
    // Sent raw: an HTTP client library would normalise `.` and `..` away.
    let names = [
        "Upper",
        "good/Name",
        "a//b",
        "..",
        "a/../b",
        "good/../../escape",
        "./a",
        "a/.",
        "-lead",
        "trail-",
        "a..b",
        "a/",
        "%2e%2e/x",
        "a%2F..%2Fb",
        "a%20b",
    ];
    for name in names {
        let requests: Vec<(String, Vec<u8>)> = vec![
            (format!("PUT /v2/{name}/manifests/v1 HTTP/1.1\nContent-Type: {OCI_MANIFEST}\nContent-Length: {}", img.manifest.len()), img.manifest.clone()),
            ("POST /v2/NAME/blobs/uploads/ HTTP/1.1\nContent-Length: 0".replace("NAME", name), Vec::new()),
            (
                format!(
                    "POST /v2/{name}/blobs/uploads/?digest={} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: {}",
                    config_d,
                    img.config.len()
                ),
                img.config.clone(),
            ),
            (format!("POST /v2/{name}/blobs/uploads/?mount={config_d}&from=good/name HTTP/1.1\nContent-Length: 0"), Vec::new()),
            (format!("GET /v2/{name}/manifests/v1 HTTP/1.1"), Vec::new()),
            (format!("GET /v2/{name}/blobs/{config_d} HTTP/1.1"), Vec::new()),
            (format!("GET /v2/{name}/tags/list HTTP/1.1"), Vec::new()),
            (format!("DELETE /v2/{name}/manifests/{} HTTP/1.1", img.digest()), Vec::new()),
        ];
        for (head, body) in requests {
            let line = head.lines().next().unwrap().to_string();
            match reg.raw(&head, &body, false) {
                Ok(r) => {
                    assert!(r.status >= 400 && r.status < 500, "{line}: {} (must be refused)", r.status);
                    if line.starts_with("PUT") || line.starts_with("POST") {
                        // A write to a name that is not one: 400 NAME_INVALID.
                        assert!(
                            r.status == 400 && r.codes().iter().any(|c| c == "NAME_INVALID"),
                            "{line}: {} {:?}",
                            r.status,
                            r.codes()
                        );
                    }
                }
                Err(e) => panic!("{line}: no response ({e})"),
            }
        }
    }
    assert_eq!(tree(&reg.storage()), before, "refused names changed storage");
    assert_eq!(tree(reg.root.parent().unwrap()), outside_before, "files appeared beside the root");
    let v = json_body(reg.get("/v2/_catalog"));
    assert_eq!(v["repositories"], json!(["good/name"]));
    // A name of 256 characters or more.
    let long = format!("{}/{}", "a".repeat(128), "b".repeat(128));
    let r = reg.put_manifest(&long, "v1", OCI_MANIFEST, &img.manifest);
    assert_error(r, 400, "NAME_INVALID", "a 257-character name");
    reg.check_image("good/name", "v1", &img);
}

#[test]
fn bodies_that_do_not_match_content_length_store_nothing() {
    let reg = Registry::start();
    let data = noise(26, 64 * 1024);
    let d = digest_of(&data);
    let half = &data[..data.len() / 2];

    // Truncated: Content-Length promises 64 KiB, the client sends half and closes.
    let head = format!(
        "POST /v2/trunc/blobs/uploads/?digest={d} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: {}",
        data.len()
    );
    if let Ok(r) = reg.raw(&head, half, true) {
        assert!(r.status >= 400, "truncated single-request upload answered {}", r.status);
    }
    assert_eq!(reg.head(&format!("/v2/trunc/blobs/{d}")).status(), 404, "truncated upload committed a blob");
    assert_eq!(reg.head(&format!("/v2/trunc/blobs/{}", digest_of(half))).status(), 404);

    // Truncated PUT into a session: the session is not advanced past what arrived intact,
    // nothing is committed, and the upload can be finished properly afterwards.
    let loc = reg.start_upload("trunc");
    let path = loc[loc.find("/v2/").unwrap()..].to_string();
    let head = format!(
        "PUT {} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: {}",
        with_query(&path, &format!("digest={d}")),
        data.len()
    );
    if let Ok(r) = reg.raw(&head, half, true) {
        assert!(r.status >= 400, "truncated PUT answered {}", r.status);
    }
    assert_eq!(reg.head(&format!("/v2/trunc/blobs/{d}")).status(), 404, "truncated PUT committed a blob");

    // Truncated PATCH: the status afterwards never claims bytes that did not arrive.
    let loc = reg.start_upload("trunc");
    let path = loc[loc.find("/v2/").unwrap()..].to_string();
    let head = format!(
        "PATCH {path} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Range: 0-{}\nContent-Length: {}",
        data.len() - 1,
        data.len()
    );
    let _ = reg.raw(&head, half, true);
    let r = send(reg.req(Method::GET, &loc));
    if r.status() == 204 {
        let range = header(&r, "range").unwrap_or_default();
        let end: usize = range.split('-').nth(1).and_then(|e| e.parse().ok()).unwrap_or(0);
        assert!(end < data.len() / 2, "after a truncated PATCH the upload claims {range}");
    } else {
        assert_eq!(r.status(), 404, "status of an upload after a truncated PATCH");
    }

    // Body longer than Content-Length: only Content-Length bytes belong to the request, so
    // a digest of the whole body does not match and nothing is stored under either digest.
    let head = format!(
        "POST /v2/long/blobs/uploads/?digest={d} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: {}",
        half.len()
    );
    let r = reg.raw(&head, &data, false).expect("a response to a request with trailing bytes");
    assert_eq!(r.status, 400, "Content-Length shorter than the body: {:?}", r.codes());
    assert!(r.codes().iter().any(|c| c == "DIGEST_INVALID"), "{:?}", r.codes());
    assert_eq!(reg.head(&format!("/v2/long/blobs/{d}")).status(), 404);

    // PATCH whose Content-Range does not match the length of its body.
    let loc = reg.start_upload("trunc");
    let r = send(
        reg.req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-1999")
            .body(data[..1000].to_vec()),
    );
    let status = r.status().as_u16();
    assert!(status == 400 || status == 416, "PATCH 0-1999 with 1000 bytes: {status}");
    let r = send(reg.req(Method::GET, &loc));
    assert_eq!(r.status(), 204);
    let range = header(&r, "range");
    assert!(range.is_none() || range.as_deref() == Some("0-0"), "refused PATCH moved the upload to {range:?}");

    // Nothing anywhere: no repository was created by the failed uploads' blobs.
    for p in tree(&reg.storage()) {
        assert!(!p.contains(&sha256_hex(&data)) && !p.contains(&sha256_hex(half)), "left in storage: {p}");
    }
    // And the server still works.
    let d2 = reg.push_blob("trunc", &data);
    assert_eq!(reg.get(&format!("/v2/trunc/blobs/{d2}")).bytes().unwrap()[..], data[..]);
}

// ---------------------------------------------------------------------------------------
// Edges real clients hit

#[test]
fn the_empty_blob_round_trips() {
    let reg = Registry::start();
    let d = reg.push_blob("empty", b"");
    assert_eq!(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let r = reg.get(&format!("/v2/empty/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
    assert!(r.bytes().unwrap().is_empty());
    let r = reg.head(&format!("/v2/empty/blobs/{d}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").as_deref(), Some("0"));
}

#[test]
fn two_sessions_uploading_the_same_blob_at_once_both_succeed() {
    let reg = std::sync::Arc::new(Registry::start());
    let data = std::sync::Arc::new(noise(27, 3 << 20));
    let d = digest_of(&data);
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (reg, data) = (reg.clone(), data.clone());
            std::thread::spawn(move || {
                let loc = reg.start_upload(&format!("race{}", i % 2));
                let r = send(
                    reg.req(Method::PUT, &with_query(&loc, &format!("digest={}", digest_of(&data))))
                        .header("content-type", "application/octet-stream")
                        .body(data.to_vec()),
                );
                r.status().as_u16()
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), 201, "concurrent PUT of the same blob");
    }
    for repo in ["race0", "race1"] {
        let body = reg.get(&format!("/v2/{repo}/blobs/{d}")).bytes().unwrap();
        assert!(body[..] == data[..], "{repo}: blob differs after concurrent uploads");
    }
}

#[test]
fn docker_schema2_manifests_and_lists_keep_their_media_type() {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let reg = Registry::start();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = noise(28, 4000);
    reg.push_blob("docker/app", &config);
    reg.push_blob("docker/app", &layer);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": digest_of(&config) },
        "layers": [{ "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": digest_of(&layer) }],
    }))
    .unwrap();
    let md = digest_of(&manifest);
    assert_eq!(reg.put_manifest("docker/app", &md, DOCKER_MANIFEST, &manifest).status(), 201);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{ "mediaType": DOCKER_MANIFEST, "size": manifest.len(), "digest": md,
                        "platform": { "architecture": "amd64", "os": "linux" } }],
    }))
    .unwrap();
    assert_eq!(reg.put_manifest("docker/app", "4.14", DOCKER_LIST, &list).status(), 201);
    for (reference, body, mt) in [(md.as_str(), &manifest, DOCKER_MANIFEST), ("4.14", &list, DOCKER_LIST)] {
        let accept = format!("{DOCKER_LIST}, {DOCKER_MANIFEST}, {OCI_INDEX}, {OCI_MANIFEST}");
        let r = send(reg.req(Method::GET, &format!("/v2/docker/app/manifests/{reference}")).header("accept", accept));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type").as_deref(), Some(mt), "{reference}");
        assert_eq!(header(&r, "docker-content-digest"), Some(digest_of(body)));
        assert_eq!(r.bytes().unwrap()[..], body[..]);
    }
}

#[test]
fn an_upload_session_belongs_to_its_repository() {
    let reg = Registry::start();
    let data = noise(29, 1000);
    let loc = reg.start_upload("owner");
    let path = loc[loc.find("/v2/").unwrap()..].to_string();
    let foreign = path.replacen("/v2/owner/", "/v2/intruder/", 1);
    assert_ne!(foreign, path);
    let r =
        send(reg.req(Method::PATCH, &foreign).header("content-type", "application/octet-stream").body(data.clone()));
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN", "PATCH of another repository's session");
    let r = send(
        reg.req(Method::PUT, &with_query(&foreign, &format!("digest={}", digest_of(&data))))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN", "PUT to another repository's session");
    assert_eq!(reg.head(&format!("/v2/intruder/blobs/{}", digest_of(&data))).status(), 404);
    // A session id that was never issued.
    let r = send(reg.req(Method::GET, "/v2/owner/blobs/uploads/00000000-0000-0000-0000-000000000000"));
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN", "status of an unknown session");
    // The owner's session is untouched.
    let r = send(reg.req(Method::GET, &loc));
    assert_eq!(r.status(), 204);
}

#[test]
fn upload_ids_that_are_paths_are_refused_and_touch_nothing() {
    let reg = Registry::start();
    let img = Image::new(30, &[100]);
    reg.push_image("u", "v1", &img);
    let before = tree(&reg.root);
    let config = std::fs::read(reg.root.join("config.json")).unwrap();
    let d = digest_of(b"x");
    for id in
        ["..", "../../../config.json", "..%2F..%2F..%2Fconfig.json", "%2e%2e", "a/../../b", "/etc/passwd", "x%00y"]
    {
        for (head, body) in [
            (format!("PATCH /v2/u/blobs/uploads/{id} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: 1"), b"x".to_vec()),
            (format!("PUT /v2/u/blobs/uploads/{id}?digest={d} HTTP/1.1\nContent-Type: application/octet-stream\nContent-Length: 1"), b"x".to_vec()),
            (format!("GET /v2/u/blobs/uploads/{id} HTTP/1.1"), Vec::new()),
            (format!("DELETE /v2/u/blobs/uploads/{id} HTTP/1.1"), Vec::new()),
        ] {
            let line = head.lines().next().unwrap().to_string();
            let r = reg.raw(&head, &body, false).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(r.status == 400 || r.status == 404, "{line}: {} {:?}", r.status, r.codes());
        }
    }
    assert_eq!(tree(&reg.root), before, "requests with path-like upload ids changed the root");
    assert_eq!(std::fs::read(reg.root.join("config.json")).unwrap(), config);
    assert_eq!(reg.head(&format!("/v2/u/blobs/{d}")).status(), 404);
}

#[test]
fn a_manifest_over_the_limit_is_refused_without_being_stored() {
    let reg = Registry::start();
    let img = Image::new(31, &[100]);
    for b in img.blobs() {
        reg.push_blob("huge", b);
    }
    // 32 MiB of annotations: above any sane manifest limit.
    let pad = "x".repeat(32 << 20);
    let manifest =
        manifest_for(&img.config, OCI_CONFIG, &img.layers, Some(json!({ "annotations": { "org.example.pad": pad } })));
    // The server may answer before reading the body and close the connection, in which
    // case the client can see a send error instead of the answer; an answer must be a
    // refusal.
    let attempts = [
        ("PUT with Content-Length", reg.req(Method::PUT, "/v2/huge/manifests/v1").body(manifest.clone())),
        (
            "chunked PUT",
            reg.req(Method::PUT, "/v2/huge/manifests/v2")
                .body(reqwest::blocking::Body::new(std::io::Cursor::new(manifest.clone()))),
        ),
    ];
    for (what, rb) in attempts {
        match rb.header("content-type", OCI_MANIFEST).send() {
            Ok(r) => {
                let status = r.status().as_u16();
                let codes = error_codes(&r.bytes().unwrap_or_default());
                assert!(status == 413 || status == 400, "{what} of a 32 MiB manifest: {status}");
                assert!(codes.iter().any(|c| c == "SIZE_INVALID" || c == "MANIFEST_INVALID"), "{what}: {codes:?}");
            }
            Err(e) => eprintln!("{what} of a 32 MiB manifest: no answer seen ({e:#})"),
        }
    }
    assert_eq!(reg.get("/v2/").status(), 200, "the server survives");
    for reference in ["v1", "v2", digest_of(&manifest).as_str()] {
        assert_eq!(reg.get(&format!("/v2/huge/manifests/{reference}")).status(), 404, "{reference}");
    }
}

#[test]
fn repository_names_that_look_like_api_paths_route_correctly() {
    let reg = Registry::start();
    let repos = ["manifests", "blobs/uploads", "a/manifests/b", "tags/list", "x/referrers", "v2/catalog"];
    let images: Vec<Image> = (0..repos.len()).map(|i| Image::new(40 + i as u64, &[100 + i])).collect();
    for (repo, img) in repos.iter().zip(&images) {
        reg.push_image(repo, "latest", img);
    }
    for (repo, img) in repos.iter().zip(&images) {
        reg.check_image(repo, "latest", img);
        let v = json_body(reg.get(&format!("/v2/{repo}/tags/list")));
        assert_eq!(v["name"], *repo);
        assert_eq!(v["tags"], json!(["latest"]), "{repo}");
        // Blobs are visible only through the repository that has them.
        for (other, other_img) in repos.iter().zip(&images) {
            if other != repo {
                let r = reg.head(&format!("/v2/{repo}/blobs/{}", digest_of(&other_img.layers[0])));
                assert_eq!(r.status(), 404, "{other}'s layer through {repo}");
            }
        }
    }
    let v = json_body(reg.get("/v2/_catalog"));
    let mut want: Vec<&str> = repos.to_vec();
    want.sort();
    assert_eq!(v["repositories"], json!(want));
}

#[test]
fn deleting_in_one_repository_leaves_the_others_alone() {
    let reg = Registry::start();
    let img = Image::new(50, &[3000]);
    reg.push_image("one", "v1", &img);
    let layer = digest_of(&img.layers[0]);
    for b in img.blobs() {
        let r = send(reg.req(Method::POST, &format!("/v2/two/blobs/uploads/?mount={}&from=one", digest_of(b))));
        assert_eq!(r.status(), 201, "mount into two");
    }
    assert_eq!(reg.put_manifest("two", "v1", OCI_MANIFEST, &img.manifest).status(), 201);

    assert_eq!(reg.delete(&format!("/v2/one/blobs/{layer}")).status(), 202);
    assert_eq!(reg.delete(&format!("/v2/one/manifests/{}", img.digest())).status(), 202);
    assert_eq!(reg.head(&format!("/v2/one/blobs/{layer}")).status(), 404);
    assert_eq!(reg.get("/v2/one/manifests/v1").status(), 404);
    // `two` still has everything, byte for byte.
    reg.check_image("two", "v1", &img);

    // A deleted blob can be pushed again.
    reg.push_blob("one", &img.layers[0]);
    assert_eq!(reg.get(&format!("/v2/one/blobs/{layer}")).bytes().unwrap()[..], img.layers[0][..]);
}
