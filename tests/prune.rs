//! `airlift prune` (must-show 1 of issue 14): two synthetic releases unpacked into one
//! root; the older pruned by an oc-mirror delete file (planned the same way by
//! `--dry-run` and by `--keep-releases 1`); then `airlift gc` frees exactly the older
//! release's exclusive blobs, and every image of the newer release still pulls with
//! skopeo and podman.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::cluster::{pack, unpack_root, unpack_to};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, airlift, run_ok};
use crate::openshift::{publish_release, Release};

/// `airlift prune --json --root ROOT ARGS…`; the document, after checking the exit code.
fn prune(root: &Path, args: &[&str]) -> Value {
    let o = airlift().args(["prune", "--json", "--root"]).arg(root).args(args).output().unwrap();
    assert!(o.status.success(), "prune failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (repository, digest) of every manifest a prune document lists under `field`.
fn listed(doc: &Value, field: &str) -> BTreeSet<(String, String)> {
    doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {doc}"))
        .iter()
        .map(|g| (g["repository"].as_str().unwrap().to_string(), g["digest"].as_str().unwrap().to_string()))
        .collect()
}

/// Blob digest → size of every blob a bundle carries, from its manifest's entries.
fn bundle_blobs(manifest: &Path) -> BTreeMap<String, u64> {
    let m: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"].as_str().unwrap().starts_with("blobs/sha256/"))
        .map(|e| (e["digest"].as_str().unwrap().to_string(), e["size"].as_u64().unwrap()))
        .collect()
}

/// Releases 4.16.2 and 4.16.3 published in `dist` (sharing components 0-5 and the
/// multi-arch one), each packed into its bundle `DIR/old`, `DIR/new`; with the blobs each
/// bundle carries.
fn two_releases(dist: &Distribution, dir: &Path) -> ([Release; 2], [PathBuf; 2], [BTreeMap<String, u64>; 2]) {
    let releases = [publish_release(dist, dir, "4.16.2", 1), publish_release(dist, dir, "4.16.3", 2)];
    let bundles = [dir.join("old"), dir.join("new")];
    let mut carried = [BTreeMap::new(), BTreeMap::new()];
    for (i, name) in ["old", "new"].into_iter().enumerate() {
        pack(dist, dir, &bundles[i], name, &["--release".into(), releases[i].reference.clone()]);
        carried[i] = bundle_blobs(&bundles[i].join(format!("{name}.manifest.json")));
    }
    (releases, bundles, carried)
}

/// The blobs the first bundle carries and the second does not, with their sizes.
fn exclusive(carried: &[BTreeMap<String, u64>; 2]) -> BTreeMap<String, u64> {
    let exclusive: BTreeMap<String, u64> =
        carried[0].iter().filter(|(d, _)| !carried[1].contains_key(*d)).map(|(d, s)| (d.clone(), *s)).collect();
    assert!(exclusive.len() > 5 && exclusive.len() < carried[0].len(), "the releases share some blobs");
    exclusive
}

fn delete_file(dir: &Path, body: &str) -> String {
    let file = dir.join("delete.yaml");
    let text = format!("kind: DeleteImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\ndelete:\n{body}");
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// Pull every image of `rel` from `reg` (by digest, where unpack put it) with skopeo and
/// with podman (every layer is a gzip tar a container runtime applies).
fn pulls(reg: &Registry, rel: &Release, dir: &Path) {
    let mut refs = vec![format!("{}/ocp/release@{}", reg.host(), rel.digest)];
    for c in &rel.components {
        let digest = c.image.split_once('@').unwrap().1;
        refs.push(format!("{}/ocp/art-dev@{digest}", reg.host()));
    }
    for (i, r) in refs.iter().enumerate() {
        let mut cmd = reg.skopeo("copy");
        cmd.args(["--quiet", "--all"]).args(reg.skopeo_src_args());
        cmd.arg(format!("docker://{r}")).arg(format!("dir:{}", dir.join(format!("pulled-{i}")).display()));
        run_ok(&mut cmd);
    }
    if !common::have("podman") {
        return;
    }
    for r in &refs {
        let mut pull = Command::new("podman");
        pull.args(["--storage-driver", "vfs", "--root"]).arg(dir.join("podman/root"));
        pull.arg("--runroot").arg(dir.join("podman/run"));
        run_ok(pull.args(["pull", "--quiet", "--cert-dir"]).arg(&reg.cert_dir).args(["--creds", &reg.creds(), r]));
    }
}

#[test]
fn pruning_the_older_release_then_gc_frees_its_exclusive_blobs_and_the_newer_still_pulls() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let ([old, new], bundles, carried) = two_releases(&dist, tmp.path());
    let mut reg = Registry::install();
    for bundle in &bundles {
        unpack_root(tmp.path(), bundle, &reg.root, &[]);
    }
    let exclusive = exclusive(&carried);
    reg.serve(&[]);

    let config = delete_file(tmp.path(), &format!("  platform:\n    release: {}\n", old.reference));
    let planned = prune(&reg.root, &["--config", &config, "--dry-run"]);
    assert_eq!(planned["dry_run"], true);
    let gone = listed(&planned, "deleted");
    // The release image and the 5 components it does not share with 4.16.3.
    assert_eq!(gone.len(), 6, "{planned}");
    assert!(gone.contains(&("ocp/release".to_string(), old.digest.clone())), "{planned}");
    let kept = listed(&planned, "kept");
    // The 7 components shared with 4.16.3, and the 2 children of the shared multi-arch index.
    assert_eq!(kept.len(), 9, "{planned}");
    for k in planned["kept"].as_array().unwrap() {
        let because = k["kept_because"].as_str().unwrap();
        assert!(because.contains("of release 4.16.3") || because.ends_with(", which stays, lists it"), "{k}");
    }
    assert_eq!(planned["bytes_freed"].as_u64(), Some(exclusive.values().sum()), "{planned}");
    assert_eq!(planned["blobs_freed"].as_u64(), Some(exclusive.len() as u64));
    // --dry-run deleted nothing; --keep-releases 1 plans the same.
    let again = prune(&reg.root, &["--keep-releases", "1", "--dry-run"]);
    assert_eq!((listed(&again, "deleted"), listed(&again, "kept")), (gone.clone(), kept.clone()), "{again}");
    assert_eq!(again["bytes_freed"], planned["bytes_freed"]);

    let old_tag = || {
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(format!("docker://{}/ocp/release:4.16.2-x86_64", reg.host()));
        cmd.output().unwrap().status.success()
    };
    assert!(old_tag(), "--dry-run deleted nothing");
    let done = prune(&reg.root, &["--config", &config]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(listed(&done, "deleted"), gone);
    assert!(!old_tag(), "the older release's tag is gone");
    assert_eq!(listed(&prune(&reg.root, &["--keep-releases", "1", "--dry-run"]), "deleted"), BTreeSet::new());

    // gc then frees exactly the older release's exclusive blobs; shared ones stay.
    let o = airlift().args(["gc", "--json", "--grace", "0s", "--root"]).arg(&reg.root).output().unwrap();
    assert!(o.status.success(), "gc: {}", String::from_utf8_lossy(&o.stderr));
    let gc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(gc["bytes_freed"].as_u64(), Some(exclusive.values().sum()), "{gc}");
    let swept: BTreeSet<&str> = gc["swept"].as_array().unwrap().iter().map(|s| s["digest"].as_str().unwrap()).collect();
    assert_eq!(swept, exclusive.keys().map(|d| d.as_str()).collect(), "{gc}");
    let blobs = reg.storage().join("blobs/sha256");
    for d in carried[0].keys() {
        let there = blobs.join(d.trim_start_matches("sha256:")).is_file();
        assert_eq!(there, !exclusive.contains_key(d), "{d}");
    }
    pulls(&reg, &new, tmp.path());
}

#[test]
fn a_kept_index_protects_the_child_a_delete_file_names() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), "4.16.3", 1);
    let mut reg = Registry::install();
    let bundle = tmp.path().join("b");
    pack(&dist, tmp.path(), &bundle, "b", &["--release".into(), rel.reference.clone()]);
    unpack_root(tmp.path(), &bundle, &reg.root, &[]);
    // A child of the multi-arch component's index, named by digest.
    let index = rel.components.last().unwrap().image.clone();
    let raw = run_ok(Command::new("skopeo").args(["inspect", "--raw", "--cert-dir"]).arg(&dist.cert_dir).args([
        "--creds",
        &dist.creds(),
        &format!("docker://{index}"),
    ]));
    let doc: Value = serde_json::from_str(&raw).unwrap();
    let child = doc["manifests"][0]["digest"].as_str().unwrap().to_string();
    // A channel selects the releases the root holds within its range, for its architectures.
    let channel = delete_file(
        tmp.path(),
        &format!(
            "  platform:\n    releaseImageBase: {}/ocp/release\n    architectures: [amd64]\n    channels:\n      - name: stable-4.16\n        minVersion: 4.16.0\n        maxVersion: 4.16.5\n",
            dist.host()
        ),
    );
    let planned = prune(&reg.root, &["--config", &channel, "--dry-run"]);
    assert!(listed(&planned, "deleted").contains(&("ocp/release".to_string(), rel.digest.clone())), "{planned}");
    assert_eq!(listed(&planned, "deleted").len() + listed(&planned, "kept").len(), 1 + 12 + 2, "{planned}");
    let config = delete_file(
        tmp.path(),
        &format!(
            "  additionalImages:\n    - name: {}/ocp/art-dev@{child}\n    - name: {}/ocp/gone:1\n",
            dist.host(),
            dist.host()
        ),
    );
    let doc = prune(&reg.root, &["--config", &config]);
    assert_eq!(listed(&doc, "deleted"), BTreeSet::new(), "{doc}");
    assert_eq!(listed(&doc, "kept"), BTreeSet::from([("ocp/art-dev".to_string(), child.clone())]));
    assert!(doc["kept"][0]["kept_because"].as_str().unwrap().contains(", which stays, lists it"), "{doc}");
    assert_eq!(doc["absent"], serde_json::json!([format!("docker://{}/ocp/gone:1", dist.host())]));
    reg.serve(&[]);
    let mut cmd = reg.skopeo("inspect");
    cmd.arg("--raw").args(reg.skopeo_args()).arg(format!("docker://{}/ocp/art-dev@{child}", reg.host()));
    run_ok(&mut cmd);
}

#[test]
fn a_bad_delete_file_is_refused_naming_the_field() {
    let tmp = common::tempdir();
    let reg = Registry::install();
    let config = delete_file(tmp.path(), "  operators:\n    - catalog: r.example/i:1\n      packages: [{name: a}]\n");
    let o = airlift().args(["prune", "--json", "--config", &config, "--root"]).arg(&reg.root).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().starts_with(&format!("{config}: delete.operators[0]:")), "{doc}");
}

#[test]
fn prune_over_the_network_deletes_the_older_release_from_a_distribution_registry() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let Some(mirror) = Distribution::start() else { return };
    let ([old, new], bundles, carried) = two_releases(&dist, tmp.path());
    let work = tmp.path().join("work");
    for bundle in &bundles {
        unpack_to(tmp.path(), bundle, &mirror, "mirror", &work, &[]);
    }
    let exclusive: u64 = exclusive(&carried).values().sum();
    let config = delete_file(tmp.path(), &format!("  platform:\n    release: {}\n", old.reference));
    let o = airlift()
        .args(["prune", "--json", "--config", &config, "--to", &format!("docker://{}/mirror", mirror.host())])
        .arg("--authfile")
        .arg(mirror.authfile(&work.join("auth")))
        .arg("--cert-dir")
        .arg(&mirror.cert_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "prune --to: {}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed(&doc, "deleted").len(), 6, "{doc}");
    assert!(listed(&doc, "deleted").contains(&("mirror/ocp/release".to_string(), old.digest.clone())), "{doc}");
    assert_eq!(listed(&doc, "kept").len(), 9, "{doc}");
    assert_eq!(doc["bytes_freed"].as_u64(), Some(exclusive), "{doc}");
    let inspect = |reference: &str| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(&mirror.cert_dir)
            .args(["--creds", &mirror.creds(), &format!("docker://{}/mirror/{reference}", mirror.host())])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!inspect("ocp/release:4.16.2-x86_64"), "the older release's tag is gone");
    assert!(!inspect(&format!("ocp/release@{}", old.digest)), "and its manifest");
    assert!(inspect(&format!("ocp/release@{}", new.digest)));
    for c in &new.components {
        assert!(inspect(&format!("ocp/art-dev@{}", c.image.split_once('@').unwrap().1)), "{}", c.name);
    }
}
