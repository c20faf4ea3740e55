use std::time::Duration;

use super::*;
use crate::oci::{DOCKER_MANIFEST, OCI_INDEX};

fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}

/// Commit a blob the way unpack does: through the shared BlobStore.
fn put_blob(s: &Storage, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    assert!(s.blobs().put_bytes(&d, bytes).unwrap());
    d
}

fn manifest(config: &Digest, layers: &[&Digest], subject: Option<&Digest>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.to_string(), "size": 1
        })).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1});
        m["artifactType"] = "application/x-sig".into();
        m["annotations"] = serde_json::json!({"k": "v"});
    }
    serde_json::to_vec(&m).unwrap()
}

fn index(children: &[&Digest]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|c| serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": c.to_string(), "size": 1,
            "platform": {"architecture": "amd64", "os": "linux"}
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn unpack_api_registers_images() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let config = put_blob(&s, b"{}");
    let layer = put_blob(&s, b"layer");
    let m = manifest(&config, &[&layer], None);
    let md = put_blob(&s, &m);
    // Referenced blobs must be linked first.
    assert!(s.link_manifest("ns/app", &md, false).is_err());
    assert!(!dir.path().join("repositories/ns/app/_manifests").exists());
    s.link_blob("ns/app", &config).unwrap();
    s.link_blob("ns/app", &layer).unwrap();
    s.link_manifest("ns/app", &md, false).unwrap();
    s.link_manifest("ns/app", &md, false).unwrap(); // idempotent
    s.tag("ns/app", "1.0", &md).unwrap();
    let r = repo("ns/app");
    let stored = s.resolve(&r, &Reference::Tag(Tag::parse("1.0").unwrap())).unwrap();
    assert_eq!(stored.digest, md);
    assert_eq!(stored.revision.media_type, OCI_MANIFEST);
    assert_eq!(stored.revision.size, m.len() as u64);
    assert_eq!(s.read_manifest_blob(&md).unwrap(), m);
    // An index needs its children registered in the repository.
    let i = index(&[&md]);
    let id = put_blob(&s, &i);
    let missing = s.link_manifest("other", &id, false).unwrap_err();
    assert!(missing.to_string().contains(&md.to_string()), "{missing}");
    // A sparse index (a bundle packed for some platforms only) is accepted without them.
    s.link_manifest("other", &id, true).unwrap();
    s.link_manifest("ns/app", &id, false).unwrap();
    s.tag("ns/app", "multi", &id).unwrap();
    assert_eq!(s.tags(&r).unwrap(), vec!["1.0", "multi"]);
    assert_eq!(s.catalog().unwrap(), vec!["ns/app", "other"]);
}

#[test]
fn refuses_bad_input_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let d = put_blob(&s, b"x");
    for bad in ["..", "a/../b", "/etc", "A", ""] {
        assert!(s.link_blob(bad, &d).is_err(), "{bad}");
    }
    assert!(s.tag("a", "../x", &d).is_err());
    // Tagging an unregistered manifest, linking a blob the store lacks.
    assert!(s.tag("a", "t", &d).is_err());
    assert!(s.link_blob("a", &Digest::of(b"absent")).is_err());
    assert_eq!(fs::read_dir(dir.path().join("repositories")).unwrap().count(), 0);
    // Manifests that do not parse or are of unknown types.
    let r = repo("a");
    for (bytes, ct) in [
        (&b"not json"[..], None),
        (br#"{"schemaVersion":1}"#, None),
        (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, None),
        (br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
        (br#"{"schemaVersion":2,"manifests":[]}"#, Some(OCI_MANIFEST)),
    ] {
        assert!(matches!(s.put_manifest(&r, bytes, ct, None), Err(StorageError::ManifestInvalid(_))), "{bytes:?}");
    }
    assert_eq!(fs::read_dir(dir.path().join("repositories")).unwrap().count(), 0);
}

#[test]
fn docker_types_and_inferred_types() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("d");
    let config = put_blob(&s, b"{}");
    s.add_link(&r, &config).unwrap();
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                    "digest": Digest::of(b"elsewhere").to_string(), "size": 9, "urls": ["https://example.com/l"]}],
    }))
    .unwrap();
    let stored = s.put_manifest(&r, &m, Some(DOCKER_MANIFEST), None).unwrap();
    assert_eq!(stored.revision.media_type, DOCKER_MANIFEST);
    // No mediaType field, no Content-Type: an image manifest by its shape.
    let bare = br#"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    assert_eq!(s.put_manifest(&r, bare, None, None).unwrap().revision.media_type, OCI_MANIFEST);
    // Declared type and field disagree.
    assert!(s.put_manifest(&r, &m, Some(OCI_MANIFEST), None).is_err());
    // A charset parameter is not part of the type.
    assert!(s
        .put_manifest(&r, &m, Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"), None)
        .is_ok());
}

#[test]
fn referrers_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("a/b");
    let config = put_blob(&s, b"{}");
    s.add_link(&r, &config).unwrap();
    let subject = s.put_manifest(&r, &manifest(&config, &[], None), None, Some(&Tag::parse("v1").unwrap())).unwrap();
    let sig = s.put_manifest(&r, &manifest(&config, &[], Some(&subject.digest)), None, None).unwrap();
    assert_eq!(sig.revision.subject.as_ref(), Some(&subject.digest));
    let refs = s.referrers(&r, &subject.digest).unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["digest"], sig.digest.to_string());
    assert_eq!(refs[0]["artifactType"], "application/x-sig");
    assert_eq!(refs[0]["annotations"]["k"], "v");
    // A referrer entry without its revision (a push that died) is not listed.
    fs::remove_file(s.path(Loc::Revision(&r, &sig.digest))).unwrap();
    assert!(s.referrers(&r, &subject.digest).unwrap().is_empty());
    s.put_manifest(&r, &manifest(&config, &[], Some(&subject.digest)), None, None).unwrap();
    s.delete_manifest(&r, &Reference::Digest(sig.digest.clone())).unwrap();
    assert!(s.referrers(&r, &subject.digest).unwrap().is_empty());
    // Deleting by digest removes the tags that point at it.
    s.delete_manifest(&r, &Reference::Digest(subject.digest.clone())).unwrap();
    assert!(s.tags(&r).unwrap().is_empty());
    assert!(matches!(
        s.delete_manifest(&r, &Reference::Digest(subject.digest.clone())),
        Err(StorageError::ManifestUnknown(_))
    ));
    assert!(matches!(s.tags(&repo("nope")), Err(StorageError::NameUnknown(_))));
}

#[test]
fn uploads_commit_verify_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("u");
    let up = s.start_upload(&r).unwrap();
    fs::write(&up.data, b"hello").unwrap();
    // Another repository cannot use the session.
    assert!(matches!(s.upload(&repo("v"), &up.id), Err(StorageError::UploadUnknown(_))));
    assert_eq!(s.upload(&r, &up.id).unwrap().size, 5);
    // A wrong digest drops the session and stores nothing.
    let wrong = Digest::of(b"other");
    assert!(matches!(s.commit_upload(&r, &up.id, &wrong, None), Err(StorageError::DigestInvalid { .. })));
    assert!(!s.upload_exists(&up.id));
    assert!(!s.blobs().path(&wrong).exists() && !s.blobs().path(&Digest::of(b"hello")).exists());
    // A right one commits and links.
    let up = s.start_upload(&r).unwrap();
    fs::write(&up.data, b"hello").unwrap();
    let d = Digest::of(b"hello");
    assert_eq!(s.commit_upload(&r, &up.id, &d, None).unwrap(), 5);
    assert_eq!(s.blob_size(&r, &d).unwrap(), Some(5));
    assert!(!s.upload_exists(&up.id));
    // Mount into another repository; delete unlinks only.
    assert!(s.mount(&r, &repo("w"), &d).unwrap());
    assert!(!s.mount(&repo("none"), &repo("w"), &Digest::of(b"zz")).unwrap());
    s.delete_blob(&r, &d).unwrap();
    assert_eq!(s.blob_size(&r, &d).unwrap(), None);
    assert_eq!(s.blob_size(&repo("w"), &d).unwrap(), Some(5));
    // Stale sessions go, fresh ones stay.
    let old = s.start_upload(&r).unwrap();
    assert_eq!(s.purge_uploads(Duration::from_secs(3600)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(s.purge_uploads(Duration::from_millis(10)).unwrap(), 1);
    assert!(!s.upload_exists(&old.id));
}

#[test]
fn layout_paths_come_from_validated_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("ns/app");
    let d = Digest::of(b"");
    let base = dir.path().join("repositories/ns/app");
    assert_eq!(s.path(Loc::Link(&r, &d)), base.join("_links").join(d.hex()));
    assert_eq!(s.path(Loc::Tag(&r, &Tag::parse("v1").unwrap())), base.join("_manifests/tags/v1"));
    assert_eq!(s.path(Loc::Referrer(&r, &d, &d)), base.join("_referrers").join(d.hex()).join(d.hex()));
    assert!(s.blobs().path(&d).starts_with(dir.path().join("blobs/sha256")));
}

#[test]
fn stale_temp_files_are_purged_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&dir.path().join("storage")).unwrap();
    let tags = dir.path().join("storage/repositories/ns/app/_manifests/tags");
    std::fs::create_dir_all(&tags).unwrap();
    let (stale, fresh) = (tags.join(".airlift-tmp-a"), tags.join(".airlift-tmp-b"));
    std::fs::write(&stale, "x").unwrap();
    std::fs::write(&fresh, "x").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    assert_eq!(s.purge_temp_files(Duration::from_secs(3600)).unwrap(), 1);
    assert!(!stale.exists() && fresh.exists());
}

#[test]
fn a_link_records_its_blob_size_and_a_blob_of_another_size_is_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(tmp.path()).unwrap();
    let r = repo("app");
    let d = put_blob(&s, b"hello");
    s.link_blob("app", &d).unwrap();
    assert_eq!(fs::read_to_string(s.link_path(&r, &d)).unwrap(), "5\n");
    assert_eq!(s.link_size(&r, &d).unwrap(), Some(Some(5)));
    assert_eq!(s.open_blob(&r, &d).unwrap().map(|(size, _)| size), Some(5));
    // Cut short (or grown): neither its size nor the file is given out.
    fs::write(s.blob_path(&d), b"hell").unwrap();
    let e = s.blob_size(&r, &d).unwrap_err().to_string();
    assert!(e.contains(&format!("blob {d} of app is 4 bytes, its link records 5")), "{e}");
    assert!(s.open_blob(&r, &d).is_err());
    // An old, empty link trusts the file's size.
    fs::write(s.link_path(&r, &d), b"").unwrap();
    assert_eq!(s.link_size(&r, &d).unwrap(), Some(None));
    assert_eq!(s.blob_size(&r, &d).unwrap(), Some(4));
    // A link that is not a size is an error naming its file; no link: not held.
    fs::write(s.link_path(&r, &d), b"five\n").unwrap();
    let e = s.blob_size(&r, &d).unwrap_err().to_string();
    assert!(e.contains(&s.link_path(&r, &d).display().to_string()), "{e}");
    assert_eq!(s.link_size(&repo("other"), &d).unwrap(), None);
}

#[test]
fn references_give_the_descriptor_sizes() {
    let config = Digest::of(b"{}");
    let layer = Digest::of(b"l");
    let m = manifest(&config, &[&layer], None);
    let refs = references(&m, OCI_MANIFEST).unwrap();
    assert_eq!(refs.blobs, [(config, 2), (layer, 1)]);
    assert!(refs.children.is_empty());
    let child = Digest::of(&m);
    let refs = references(&index(&[&child]), OCI_INDEX).unwrap();
    assert_eq!(refs.children, [(child, 1)]);
    assert!(references(b"{\"schemaVersion\":2,\"layers\":1}", OCI_MANIFEST).is_err());
}
