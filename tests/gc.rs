//! `airlift gc` on a served registry root: what a deleted image held alone goes (the
//! bytes freed computed here), shared blobs stay and the other image still pulls with
//! skopeo; `--dry-run` changes nothing; the grace keeps fresh blobs; an unpack journal
//! keeps its blobs; and GC run 50 times while skopeo pushes new images never costs a
//! pushed image a blob (issue 14, must-show 2).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::registry::{digest_of, manifest_for, Image, Registry, OCI_CONFIG, OCI_MANIFEST};
use crate::common::{airlift, dir_contents, have, make_layout_seeded, tempdir};

/// `airlift gc --root ROOT --json ARGS`: its JSON document (the run must succeed).
fn gc(root: &Path, args: &[&str]) -> Value {
    let out = airlift().args(["gc", "--json", "--root"]).arg(root).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gc {args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("gc printed no JSON ({e}): {stdout}"));
    assert_eq!((doc["status"].as_str(), doc["exit_code"].as_u64()), (Some("ok"), Some(0)), "{doc}");
    doc
}

/// The swept digests and sizes of a gc report.
fn swept(doc: &Value) -> BTreeMap<String, u64> {
    let swept = doc["swept"].as_array().unwrap_or_else(|| panic!("no swept list: {doc}"));
    let list: BTreeMap<String, u64> =
        swept.iter().map(|s| (s["digest"].as_str().unwrap().to_string(), s["size"].as_u64().unwrap())).collect();
    assert_eq!(doc["blobs_swept"].as_u64(), Some(list.len() as u64), "{doc}");
    assert_eq!(doc["bytes_freed"].as_u64(), Some(list.values().sum()), "{doc}");
    list
}

fn blob_file(reg: &Registry, digest: &str) -> std::path::PathBuf {
    reg.storage().join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[test]
fn gc_frees_what_a_deleted_image_held_alone() {
    if !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    // Two images sharing their first layer; a stray blob no manifest names.
    let a = Image::new(1, &[3000, 5000]);
    let mut b = Image::new(2, &[4000]);
    b.layers.insert(0, a.layers[0].clone());
    b.manifest = manifest_for(&b.config, OCI_CONFIG, &b.layers, None);
    reg.push_image("team/a", "v1", &a);
    reg.push_image("team/b", "v1", &b);
    let stray_bytes = b"uploaded, never used by a manifest";
    let stray = reg.push_blob("team/stray", stray_bytes);
    let r = reg.delete(&format!("/v2/team/a/manifests/{}", a.digest()));
    assert_eq!(r.status(), 202, "DELETE team/a@{}", a.digest());

    // Everything is younger than the default grace of an hour: nothing goes.
    let fresh = gc(&reg.root, &[]);
    assert!(swept(&fresh).is_empty(), "fresh blobs were swept: {fresh}");
    assert_eq!(fresh["dry_run"], false);

    // What image a held alone: its manifest, config and second layer; and the stray blob.
    let mut expected: BTreeMap<String, u64> = [&a.manifest, &a.config, &a.layers[1]]
        .into_iter()
        .map(|bytes| (digest_of(bytes), bytes.len() as u64))
        .collect();
    expected.insert(stray.clone(), stray_bytes.len() as u64);
    let before = dir_contents(&reg.storage().join("blobs/sha256"));
    let dry = gc(&reg.root, &["--dry-run", "--grace", "0s"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(swept(&dry), expected, "dry run");
    assert_eq!(dir_contents(&reg.storage().join("blobs/sha256")), before, "--dry-run removed something");

    let real = gc(&reg.root, &["--grace", "0s"]);
    assert_eq!(swept(&real), expected);
    assert_eq!(real["bytes_freed"].as_u64(), Some(expected.values().sum::<u64>()));
    assert_eq!(real["blobs_kept"].as_u64(), Some(before.len() as u64 - expected.len() as u64), "{real}");
    for d in expected.keys() {
        assert!(!blob_file(&reg, d).exists(), "{d} is still stored");
    }
    for blob in b.blobs() {
        assert!(blob_file(&reg, &digest_of(blob)).exists(), "a blob of team/b was swept");
    }
    assert_eq!(reg.head(&format!("/v2/team/stray/blobs/{stray}")).status(), 404, "the stray blob is still served");
    let pulled = tempdir();
    let o = reg
        .skopeo("copy")
        .args(reg.skopeo_src_args())
        .arg(reg.docker_ref("team/b:v1"))
        .arg(format!("dir:{}", pulled.path().join("b").display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "pull team/b:v1 after gc: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn gc_keeps_a_blob_an_unpack_journal_names() {
    let reg = Registry::install();
    let storage = reg.storage();
    let bytes = b"a layer an unpack committed and has not registered yet";
    let digest = digest_of(bytes);
    let path = blob_file(&reg, &digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let journal = storage.join(".airlift/journal/bundle-1");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, format!("entry 0 {}\n", digest.trim_start_matches("sha256:"))).unwrap();

    assert!(swept(&gc(&reg.root, &["--grace", "0s"])).is_empty());
    assert!(path.exists(), "the journaled blob was swept");
    // The unpack finished (its journal went) without registering the blob: now it goes.
    std::fs::remove_file(&journal).unwrap();
    assert_eq!(swept(&gc(&reg.root, &["--grace", "0s"])), [(digest, bytes.len() as u64)].into());
}

/// Must-show 2: skopeo pushes a new image (new random layers) in a loop while
/// `airlift gc --grace 0s` runs at least 50 times (back to back through every other push);
/// every push skopeo reported done then pulls
/// completely (skopeo copy to dir: every blob fetched and checked against its digest).
#[test]
fn gc_racing_pushes_never_costs_a_pushed_image_a_blob() {
    if !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    let work = tempdir();
    let (mut pushed, mut refused, mut runs, mut swept_total) = (Vec::new(), 0, 0, 0);
    for round in 0u64.. {
        if runs >= 50 && round >= 6 {
            break;
        }
        let layout = work.path().join(format!("src-{round}"));
        make_layout_seeded(&layout, &[&[20_000, 50_000, 3_000, 80_000, 1_000]], false, 100_000 * (round + 1));
        let tag = format!("race/app:r{round}");
        let mut push = reg
            .skopeo("copy")
            .args(reg.skopeo_dest_args())
            .arg(format!("oci:{}:img-0", layout.display()))
            .arg(reg.docker_ref(&tag))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Even rounds: gc back to back for the whole push (a layer uploaded and not yet
        // named by a manifest is garbage at --grace 0s: such a push is refused, or is whole).
        // Odd rounds: one gc as the push starts.
        let status = loop {
            swept_total += swept(&gc(&reg.root, &["--grace", "0s"])).len();
            runs += 1;
            if round % 2 == 1 {
                break push.wait().unwrap();
            }
            if let Some(status) = push.try_wait().unwrap() {
                break status;
            }
        };
        if status.success() {
            pushed.push(tag);
        } else {
            refused += 1;
        }
    }
    eprintln!("{} pushes done, {refused} refused during {runs} gc runs that swept {swept_total} blobs", pushed.len());
    assert!(!pushed.is_empty(), "no push got through ({refused} refused)");
    for (n, tag) in pushed.iter().enumerate() {
        let dest = work.path().join(format!("pull-{n}"));
        let o = reg
            .skopeo("copy")
            .args(reg.skopeo_src_args())
            .arg(reg.docker_ref(tag))
            .arg(format!("dir:{}", dest.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "pull {tag} (pushed during gc): {}", String::from_utf8_lossy(&o.stderr));
        let manifest: Value = serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(5), "{tag}");
    }
}
