use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::oci::{OCI_INDEX, OCI_MANIFEST};
use crate::store::State;

fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}

fn put_blob(s: &Storage, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    s.blobs().put_bytes(&d, bytes).unwrap();
    d
}

fn descriptor(media_type: &str, d: &Digest) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": 1})
}

/// Put a manifest naming `config` and `layers` (linked first) into `name`.
fn image(s: &Storage, name: &str, config: &Digest, layers: &[&Digest], subject: Option<&Digest>) -> Digest {
    let mut m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    });
    if let Some(d) = subject {
        m["subject"] = descriptor(OCI_MANIFEST, d);
    }
    for d in std::iter::once(config).chain(layers.iter().copied()) {
        s.link_blob(name, d).unwrap();
    }
    s.put_manifest(&repo(name), &serde_json::to_vec(&m).unwrap(), None, None).unwrap().digest
}

/// Collect with a grace of `grace` seconds (0: every blob is old as soon as it is written).
fn run(s: &Storage, grace: u64, dry_run: bool) -> Report {
    collect_in(s, &Options { grace: Duration::from_secs(grace), dry_run }).unwrap()
}

fn stored(s: &Storage) -> BTreeMap<Digest, u64> {
    store::list_blobs(s.blobs().root()).unwrap().into_iter().map(|b| (b.digest, b.size)).collect()
}

fn swept(r: &Report) -> BTreeSet<Digest> {
    r.swept.iter().map(|w| w.digest.clone()).collect()
}

#[test]
fn sweeps_what_a_deleted_manifest_held_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let (config_a, config_b) = (put_blob(&s, b"{\"a\":1}"), put_blob(&s, b"{\"b\":2}"));
    let (shared, own) = (put_blob(&s, b"shared layer"), put_blob(&s, b"layer of a only"));
    let a = image(&s, "ns/a", &config_a, &[&shared, &own], None);
    let b = image(&s, "ns/b", &config_b, &[&shared], None);
    s.delete_manifest(&repo("ns/a"), &Reference::Digest(a.clone())).unwrap();
    let before = stored(&s);

    let dry = run(&s, 0, true);
    assert!(dry.dry_run);
    assert_eq!(stored(&s), before, "a dry run removes nothing");
    assert_eq!(run(&s, 3600, false).blobs_swept, 0, "everything is younger than an hour");

    let report = run(&s, 0, false);
    let gone: BTreeSet<Digest> = [a, config_a, own.clone()].into();
    assert_eq!(swept(&report), gone);
    assert_eq!(dry.swept, report.swept);
    assert_eq!(report.bytes_freed, gone.iter().map(|d| before[d]).sum::<u64>());
    assert_eq!(report.blobs_kept, before.len() - gone.len());
    let after = stored(&s);
    assert!(gone.iter().all(|d| !after.contains_key(d)) && after.len() == report.blobs_kept);
    assert!(!s.links(&repo("ns/a")).unwrap().contains(&own), "the swept blob's links go with it");
    assert!(s.resolve(&repo("ns/b"), &Reference::Digest(b)).is_ok());
    assert_eq!(run(&s, 0, false).blobs_swept, 0, "a second run finds nothing");
}

#[test]
fn keeps_untagged_revisions_children_subjects_and_journaled_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let config = put_blob(&s, b"{}");
    let layer = put_blob(&s, b"layer");
    let child = image(&s, "app", &config, &[&layer], None);
    let idx = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, &child)],
    }))
    .unwrap();
    let tag = Tag::parse("v1").unwrap();
    let index = s.put_manifest(&repo("app"), &idx, None, Some(&tag)).unwrap().digest;
    // A signature whose subject is the index; then the index's revision goes.
    let sig_config = put_blob(&s, b"{\"sig\":1}");
    let sig = image(&s, "app", &sig_config, &[], Some(&index));
    s.delete_manifest(&repo("app"), &Reference::Digest(index.clone())).unwrap();
    // An unpack cut off after committing this blob, before registering it.
    let journaled = put_blob(&s, b"half-unpacked layer");
    let journals = s.blobs().state(State::Journals);
    std::fs::create_dir_all(&journals).unwrap();
    std::fs::write(journals.join("bundle-1"), format!("3 abcd\nentry 7 {}\nentry 8 torn", journaled.hex())).unwrap();
    let orphan = put_blob(&s, b"nobody's");

    let report = run(&s, 0, false);
    assert_eq!(swept(&report), [orphan].into(), "only the orphan goes");
    let after = stored(&s);
    for kept in [&config, &layer, &child, &index, &sig, &sig_config, &journaled] {
        assert!(after.contains_key(kept), "{kept} was swept");
    }
    assert_eq!(run(&s, 0, false).uploads_purged, 0, "a fresh upload area has nothing stale");
}

#[test]
fn a_fresh_link_keeps_an_unreferenced_blob_for_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let blob = put_blob(&s, b"uploaded, manifest not pushed yet");
    s.link_blob("app", &blob).unwrap();
    let old = SystemTime::now() - Duration::from_secs(7200);
    let f = std::fs::File::options().write(true).open(s.blob_path(&blob)).unwrap();
    f.set_modified(old).unwrap();
    assert_eq!(run(&s, 3600, false).blobs_swept, 0, "the link is younger than the grace");
    let link = s.blobs().root().join("repositories/app/_links").join(blob.hex());
    std::fs::File::options().write(true).open(link).unwrap().set_modified(old).unwrap();
    assert_eq!(swept(&run(&s, 3600, false)), [blob].into());
}
