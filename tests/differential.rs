//! Trip after trip: two synthetic releases sharing most layers (as 4.16.3 and 4.16.4 do),
//! the second packed against what the far side holds — a receipt from the registry root
//! the first was unpacked into (`--have`), or the first bundle's manifest (`--since`) —
//! carries only the new layers; unpacked where the base is, every image of both pulls;
//! unpacked where it is not, it names what is missing and who it expected it from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cluster::{pack, pack_command, unpack_root, unpack_to};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, airlift, keygen};
use crate::openshift::{publish_release, Release};

/// Two releases in `dist`, and the first packed into `DIR/b1` (bundle `ocp-1`).
struct Trip {
    tmp: tempfile::TempDir,
    dist: Distribution,
    second: Release,
    b1: PathBuf,
}

impl Trip {
    fn start() -> Option<Trip> {
        if !common::have("skopeo") {
            return None;
        }
        let tmp = common::tempdir();
        let dist = Distribution::start()?;
        let first = publish_release(&dist, tmp.path(), "4.16.3", 1);
        let second = publish_release(&dist, tmp.path(), "4.16.4", 2);
        let b1 = tmp.path().join("b1");
        pack(&dist, tmp.path(), &b1, "ocp-1", &["--release".into(), first.reference.clone()]);
        Some(Trip { tmp, dist, second, b1 })
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn b1_manifest(&self) -> PathBuf {
        self.b1.join("ocp-1.manifest.json")
    }

    /// Pack the second release into `DIR/NAME` with `args`; returns (bundle, manifest).
    fn pack_second(&self, name: &str, args: &[String]) -> (PathBuf, Value) {
        let out = self.dir().join(name);
        let mut all = vec!["--release".to_string(), self.second.reference.clone()];
        all.extend_from_slice(args);
        pack(&self.dist, self.dir(), &out, name, &all);
        let m = manifest(&out.join(format!("{name}.manifest.json")));
        (out, m)
    }
}

fn manifest(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The blob entries of a bundle manifest: digest → size.
fn carried(m: &Value) -> BTreeMap<String, u64> {
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "blob")
        .map(|e| (e["digest"].as_str().unwrap().to_string(), e["size"].as_u64().unwrap()))
        .collect()
}

/// Every blob any image of a bundle manifest needs.
fn needed(m: &Value) -> BTreeSet<String> {
    m["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["blobs"].as_array().unwrap())
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// The blobs of `store` (a registry root's or a layout's `blobs/sha256`) that are JSON
/// documents (manifests, indexes, configs): the synthetic layers are random bytes.
fn is_document(store: &Path, digest: &str) -> bool {
    let bytes = std::fs::read(store.join(digest.trim_start_matches("sha256:"))).unwrap();
    serde_json::from_slice::<Value>(&bytes).is_ok()
}

/// What the differential bundle `m2` must leave out, given what `b1` carried and where
/// every blob is readable (`store`): each layer the second release shares with the first.
fn expected_omitted(m1: &Value, m2: &Value, store: &Path) -> BTreeMap<String, u64> {
    let first = carried(m1);
    needed(m2)
        .into_iter()
        .filter(|d| first.contains_key(d) && !is_document(store, d))
        .map(|d| {
            let size = first[&d];
            (d, size)
        })
        .collect()
}

fn omitted(m: &Value) -> BTreeMap<String, u64> {
    m["omitted"]
        .as_array()
        .map(|o| o.iter().map(|o| (o["digest"].as_str().unwrap().to_string(), o["size"].as_u64().unwrap())).collect())
        .unwrap_or_default()
}

/// Check bundle `m2` (the second release, packed against the first) carries exactly the
/// blobs the first did not, plus the documents, and omits exactly the shared layers with
/// their sizes, from base `base_kind`.
fn assert_only_new_layers(m1: &Value, m2: &Value, full2: &Value, store: &Path, base_kind: &str) {
    let expect = expected_omitted(m1, full2, store);
    assert!(expect.len() >= 12, "the releases share only {} layers", expect.len());
    assert_eq!(omitted(m2), expect, "omitted blobs");
    let bytes: u64 = expect.values().sum();
    assert_eq!(m2["omitted"].as_array().unwrap().iter().map(|o| o["size"].as_u64().unwrap()).sum::<u64>(), bytes);
    // What travels is the full bundle's blobs minus exactly those.
    let mut travels = carried(full2);
    expect.keys().for_each(|d| {
        travels.remove(d);
    });
    assert_eq!(carried(m2), travels, "carried blobs");
    let new_layers: Vec<_> = travels.keys().filter(|d| !is_document(store, d)).collect();
    // The five components that changed have a new first layer; the release image a new payload.
    assert_eq!(new_layers.len(), 6, "new layers: {new_layers:?}");
    let bases = m2["bases"].as_array().unwrap();
    assert_eq!(bases.len(), 1, "{bases:?}");
    assert_eq!(bases[0]["kind"], base_kind);
    assert!(m2["omitted"].as_array().unwrap().iter().all(|o| o["base"] == bases[0]["id"]));
}

/// The registry root of an `unpack --root`, served with the credentials it printed.
fn serve_root(root: &Path, doc: &Value) -> Registry {
    let installed = &doc["registry"]["installed"];
    let ca = PathBuf::from(installed["ca_file"].as_str().expect("ca_file"));
    let mut reg =
        Registry::adopt(root, installed["user"].as_str().unwrap(), installed["password"].as_str().unwrap(), &ca);
    reg.serve(&[]);
    reg
}

/// Pull every image an unpack published (`skopeo copy` to a directory: every blob is
/// fetched and checked).
fn pull_all(reg: &Registry, docs: &[&Value], work: &Path) {
    let mut n = 0;
    for doc in docs {
        for image in doc["registry"]["images"].as_array().unwrap() {
            let reference = image["reference"].as_str().unwrap();
            let (_, path) = reference.split_once('/').unwrap();
            let dest = work.join(format!("pull-{n}"));
            n += 1;
            let o = reg
                .skopeo("copy")
                .args(reg.skopeo_src_args())
                .arg(reg.docker_ref(path))
                .arg(format!("dir:{}", dest.display()))
                .output()
                .unwrap();
            assert!(o.status.success(), "pull {reference}: {}", String::from_utf8_lossy(&o.stderr));
            std::fs::remove_dir_all(&dest).unwrap();
        }
    }
    assert!(n >= 26, "only {n} images pulled");
}

#[test]
fn a_second_release_packed_against_a_receipt_carries_only_its_new_layers() {
    let Some(trip) = Trip::start() else { return };
    let dir = trip.dir();
    let root = dir.join("root");
    let d1 = unpack_root(dir, &trip.b1, &root, &["--no-start"]);
    let (site_key, site_pub) = keygen(&dir.join("site-keys"), "far");
    let receipt = dir.join("far.receipt");
    airlift()
        .args(["receipt", "--root"])
        .arg(&root)
        .arg("--out")
        .arg(&receipt)
        .arg("--key")
        .arg(&site_key)
        .assert()
        .success();

    let have =
        ["--have".to_string(), receipt.display().to_string(), "--have-key".into(), site_pub.display().to_string()];
    let (b2, m2) = trip.pack_second("ocp-2", &have);
    let (_, full2) = trip.pack_second("ocp-2-full", &[]);
    // Every blob of both releases is in the pack cache (the full pack fetched them).
    let cache = dir.join("cache/blobs/sha256");
    assert_only_new_layers(&manifest(&trip.b1_manifest()), &m2, &full2, &cache, "receipt");

    // verify says what it relies on; list too.
    let o =
        airlift().arg("verify").arg(&b2).arg("--key").arg(dir.join("keys/site.pub")).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["differential"]["blobs"], m2["omitted"].as_array().unwrap().len());
    assert_eq!(v["differential"]["bytes"], omitted(&m2).values().sum::<u64>());
    assert_eq!(v["differential"]["bases"][0]["kind"], "receipt");
    let o = airlift().arg("list").arg(&b2).output().unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.contains("differential: relies on") && listed.contains("receipt"), "{listed}");

    let d2 = unpack_root(dir, &b2, &root, &[]);
    assert_eq!(d2["status"], "ok", "{d2}");
    let reg = serve_root(&root, &d1);
    pull_all(&reg, &[&d1, &d2], dir);

    // A receipt signed by another key is refused before anything is fetched.
    let (_, other_pub) = keygen(&dir.join("other-keys"), "other");
    let wrong = [
        "--release".to_string(),
        trip.second.reference.clone(),
        "--have".into(),
        receipt.display().to_string(),
        "--have-key".into(),
        other_pub.display().to_string(),
    ];
    let o = pack_command(&trip.dist, dir, &dir.join("wrong"), "wrong", &wrong).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("far.receipt"), "{err}");
    assert!(!dir.join("wrong/wrong.manifest.json").exists());
}

#[test]
fn a_bundle_packed_since_an_earlier_one_relies_on_it_and_waits_for_it() {
    let Some(trip) = Trip::start() else { return };
    let dir = trip.dir();
    let since = ["--since".to_string(), trip.b1_manifest().display().to_string()];
    let (b2, m2) = trip.pack_second("ocp-2", &since);
    let (_, full2) = trip.pack_second("ocp-2-full", &[]);
    let m1 = manifest(&trip.b1_manifest());
    assert_only_new_layers(&m1, &m2, &full2, &dir.join("cache/blobs/sha256"), "bundle");
    assert_eq!(m2["bases"][0]["id"], m1["id"]);
    assert_eq!(m2["bases"][0]["name"], "ocp-1");

    // Into a fresh root (the base missing): exit 3, naming the missing blobs and the base.
    let root = dir.join("fresh");
    let o = airlift()
        .args(["unpack", "--json"])
        .arg(&b2)
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .arg("--root")
        .arg(&root)
        .arg("--no-start")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lacking = doc["lacking"].as_array().unwrap();
    let lacking_digests: BTreeSet<&str> = lacking.iter().map(|l| l["digest"].as_str().unwrap()).collect();
    let omitted = omitted(&m2);
    assert_eq!(lacking_digests, omitted.keys().map(String::as_str).collect());
    let base = lacking[0]["base"].as_str().unwrap();
    assert!(base.contains(m1["id"].as_str().unwrap()) && base.contains("ocp-1"), "{base}");
    assert!(err.contains(m1["id"].as_str().unwrap()) && err.contains("ocp-1"), "{err}");
    // Images whose blobs are all here are published: the release image's payload is new.
    let published: Vec<&str> =
        doc["registry"]["images"].as_array().unwrap().iter().map(|i| i["digest"].as_str().unwrap()).collect();
    assert!(published.contains(&trip.second.digest.as_str()), "{published:?}");
    assert!(published.len() < m2["images"].as_array().unwrap().len());

    // The base arrives; the rerun completes and everything of both pulls.
    let d1 = unpack_root(dir, &trip.b1, &root, &[]);
    let d2 = unpack_root(dir, &b2, &root, &[]);
    assert_eq!(d2["status"], "ok", "{d2}");
    assert!(d2["lacking"].as_array().unwrap().is_empty());
    let installed = doc.clone();
    let reg = serve_root(&root, &installed);
    pull_all(&reg, &[&d1, &d2], dir);
}

#[test]
fn a_receipt_of_a_registry_reached_with_to_makes_a_differential_push() {
    let Some(trip) = Trip::start() else { return };
    let dir = trip.dir();
    let Some(mirror) = Distribution::start() else { return };
    let work = dir.join("work");
    let d1 = unpack_to(dir, &trip.b1, &mirror, "mirror", &work, &[]);
    assert_eq!(d1["status"], "ok");
    let receipt = dir.join("mirror.receipt");
    airlift()
        .args(["receipt", "--to", &format!("docker://{}/mirror", mirror.host()), "--authfile"])
        .arg(mirror.authfile(&work.join("auth")))
        .arg("--cert-dir")
        .arg(&mirror.cert_dir)
        .arg("--out")
        .arg(&receipt)
        .assert()
        .success();
    let (b2, m2) = trip.pack_second("ocp-2", &["--have".into(), receipt.display().to_string()]);
    let (_, full2) = trip.pack_second("ocp-2-full", &[]);
    assert_only_new_layers(&manifest(&trip.b1_manifest()), &m2, &full2, &dir.join("cache/blobs/sha256"), "receipt");
    // The receipt knows which repository holds each blob.
    assert!(m2["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["repository"].as_str().is_some_and(|r| r.starts_with("mirror/"))));

    // A registry without the base: exit 3 before any image is published.
    let Some(empty) = Distribution::start() else { return };
    let o = airlift()
        .args(["unpack", "--json"])
        .arg(&b2)
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .args(["--to", &format!("docker://{}/mirror", empty.host()), "--authfile"])
        .arg(empty.authfile(&dir.join("empty-auth")))
        .arg("--cert-dir")
        .arg(&empty.cert_dir)
        .arg("--cache")
        .arg(dir.join("empty-staging"))
        .arg("--results")
        .arg(dir.join("empty-results"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));

    // Into the registry the receipt describes: only the new layers are uploaded. Under the
    // same prefix the layers are in the images' repositories; under another, they are
    // mounted from the repositories the receipt names.
    let d2 = unpack_to(dir, &b2, &mirror, "mirror", &work, &[]);
    assert_eq!(d2["status"], "ok", "{d2}");
    let new_bytes: u64 = carried(&m2).values().sum();
    let uploaded = d2["push"]["bytes"].as_u64().unwrap();
    assert!(uploaded <= new_bytes, "uploaded {uploaded} of {new_bytes}");
    let d3 = unpack_to(dir, &b2, &mirror, "other", &dir.join("work-other"), &[]);
    assert_eq!(d3["status"], "ok", "{d3}");
    let images = d2["push"]["images"].as_array().unwrap().iter().chain(d3["push"]["images"].as_array().unwrap());
    for image in images {
        let reference = image["reference"].as_str().unwrap();
        let dest = dir.join("pulled");
        let o = std::process::Command::new("skopeo")
            .args(["copy", "--src-cert-dir"])
            .arg(&mirror.cert_dir)
            .args(["--src-creds", &mirror.creds(), &format!("docker://{reference}")])
            .arg(format!("dir:{}", dest.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "pull {reference}: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::remove_dir_all(&dest).unwrap();
    }
}

/// An edit of a signed manifest.
type Forge = fn(&mut airlift::bundle::manifest::Manifest);

/// Pack layout `src` into `DIR/NAME` (key DIR/keys/site.key) with `args`; returns the bundle.
fn pack_layout(dir: &Path, src: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    airlift()
        .args(["pack", "--no-installer", "--name", name, "--key"])
        .arg(dir.join("keys/site.key"))
        .arg("--out")
        .arg(&out)
        .arg(format!("oci:{}", src.display()))
        .args(args)
        .assert()
        .success();
    out
}

fn unpack_layout(dir: &Path, bundle: &Path, layout: &Path) -> std::process::Output {
    airlift()
        .args(["unpack", "--json"])
        .arg(bundle)
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .arg("--layout")
        .arg(layout)
        .output()
        .unwrap()
}

#[test]
fn a_differential_layout_bundle_waits_for_its_base_and_forged_reliance_is_refused() {
    let tmp = common::tempdir();
    let dir = tmp.path();
    keygen(&dir.join("keys"), "site");
    // The second layout holds the first's two images (the same bytes) and a new one.
    common::make_layout(&dir.join("l1"), &[&[30_000, 2_000], &[25_000]], false);
    common::make_layout(&dir.join("l2"), &[&[30_000, 2_000], &[25_000], &[40_000]], false);
    let b1 = pack_layout(dir, &dir.join("l1"), "one", &[]);
    let since = b1.join("one.manifest.json");
    let b2 = pack_layout(dir, &dir.join("l2"), "two", &["--since", since.to_str().unwrap()]);
    let m2 = manifest(&b2.join("two.manifest.json"));
    let m1 = manifest(&since);
    let l1_layers: BTreeSet<String> =
        carried(&m1).into_keys().filter(|d| !is_document(&dir.join("l1/blobs/sha256"), d)).collect();
    assert_eq!(l1_layers.len(), 3);
    assert_eq!(omitted(&m2).into_keys().collect::<BTreeSet<_>>(), l1_layers);
    assert!(carried(&m2).keys().all(|d| !l1_layers.contains(d)));

    // An earlier manifest signed by another key, or altered, is not relied on.
    let (other, _) = keygen(&dir.join("other-keys"), "other");
    for (name, edit) in [("signed-elsewhere", None), ("altered", Some(()))] {
        let copy = dir.join(name);
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(&since, copy.join("one.manifest.json")).unwrap();
        std::fs::copy(b1.join("one.manifest.json.minisig"), copy.join("one.manifest.json.minisig")).unwrap();
        match edit {
            None => crate::trust::resign(&copy, "one", &other, |_| {}),
            Some(()) => {
                let text = std::fs::read_to_string(copy.join("one.manifest.json")).unwrap();
                std::fs::write(copy.join("one.manifest.json"), text.replacen("\"one\"", "\"One\"", 1)).unwrap();
            }
        }
        let o = airlift()
            .args(["pack", "--no-installer", "--name", "x", "--key"])
            .arg(dir.join("keys/site.key"))
            .arg("--out")
            .arg(dir.join("x"))
            .arg(format!("oci:{}", dir.join("l2").display()))
            .arg("--since")
            .arg(copy.join("one.manifest.json"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("one.manifest.json"), "{name}: {err}");
        assert!(!dir.join("x").exists());
    }

    let layout = dir.join("out");
    let o = unpack_layout(dir, &b2, &layout);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("bundle {}", m1["id"].as_str().unwrap())) && err.contains("(one, made"), "{err}");
    // The new image is published already; the two that need the base are not.
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert!(unpack_layout(dir, &b1, &layout).status.success());
    let o = unpack_layout(dir, &b2, &layout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);

    // Signed but inconsistent reliance is refused at the gate (exit 1), naming the fault.
    let forgeries: [(&str, Forge); 5] = [
        ("which is not listed", |m| m.omitted[0].base = "00".repeat(16)),
        ("not in the bundle", |m| {
            m.omitted.remove(0);
        }),
        ("both carried and omitted", |m| {
            let carried = m.entries.iter().find(|e| e.path.starts_with("blobs/")).unwrap().digest.clone();
            m.omitted[0].digest = carried;
        }),
        ("needed by no image", |m| m.omitted[0].digest = airlift::digest::Digest::of(b"nobody")),
        ("listed twice", |m| {
            let again = m.bases[0].clone();
            m.bases.push(again);
        }),
    ];
    for (why, forge) in forgeries {
        let copy = dir.join("forged");
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(&b2).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
        }
        crate::trust::resign(&copy, "two", &dir.join("keys/site.key"), forge);
        let o = airlift().arg("verify").arg(&copy).arg("--key").arg(dir.join("keys/site.pub")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
    }
}
