//! `pack --dry-run` and `--mapping` end to end: an image set with a synthetic release and
//! additional images in Debian's docker-registry; the dry run's figures equal what the
//! real pack then writes (images, blobs, bytes, volumes), nothing is written to --out, and
//! the mapping.txt lines are the references unpack publishes (--root and --to). The
//! figures are checked the same way for an operator catalog and for differential packs
//! (--since an earlier bundle, --have a receipt), with what changed since.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cluster::{keyless_pack_command, pack, pack_command, unpack_root, unpack_to};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, airlift, testdata};
use crate::openshift::{publish_release, VERSION};

/// The image set: the release and two additional images, at `DIR/imageset.yaml`.
fn image_set(dist: &Distribution, dir: &Path) -> PathBuf {
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:app-00", layout.display()), "extra/app:1");
    dist.push(&format!("oci:{}:app-01", layout.display()), "extra/tool:1");
    let host = dist.host();
    let config = dir.join("imageset.yaml");
    std::fs::write(
        &config,
        format!(
            "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n\
             mirror:\n  platform:\n    architectures: [amd64]\n    releaseImageBase: {host}/ocp/release\n\
             \x20   releases:\n      - version: {VERSION}\n\
             \x20 additionalImages:\n    - name: {host}/extra/app:1\n    - name: {host}/extra/tool:1\n"
        ),
    )
    .unwrap();
    config
}

/// `pack --dry-run` without --key from `dist` (auth `DIR/auth`, cache `DIR/cache`) into
/// `out` (not run).
fn dry_run_command(dist: &Distribution, dir: &Path, out: &Path, args: &[String]) -> assert_cmd::Command {
    let mut cmd = keyless_pack_command(dist, dir, out, "set", args);
    cmd.arg("--dry-run");
    cmd
}

/// `pack --dry-run --json`: its document.
fn dry_run(dist: &Distribution, dir: &Path, out: &Path, args: &[String]) -> Value {
    let o = dry_run_command(dist, dir, out, args).arg("--json").output().unwrap();
    assert!(o.status.success(), "pack --dry-run failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (source, destination) of every mapping.txt line.
fn mapping(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (s, d) = l.split_once('=').unwrap_or_else(|| panic!("not SOURCE=DESTINATION: {l}"));
            (s.to_string(), d.to_string())
        })
        .collect();
    lines.sort();
    lines
}

/// (source, docker://reference) of every image an unpack published (`images` of its document).
fn published(images: &Value) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["source"].as_str().unwrap().to_string(), format!("docker://{}", i["reference"].as_str().unwrap())))
        .collect();
    list.sort();
    list
}

/// Assert that the dry run's document `dry` has the figures of what the pack (its
/// document `doc`) wrote as bundle `set` in `out`: images, blobs carried and left out,
/// bytes, volumes. Returns the number of images.
fn assert_written(dry: &Value, doc: &Value, out: &Path) -> usize {
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("set.manifest.json")).unwrap()).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    let carried: Vec<u64> = entries.iter().filter(|e| e["kind"] == "blob").map(|e| u64_of(&e["size"])).collect();
    let omitted: Vec<u64> =
        manifest["omitted"].as_array().map_or(vec![], |o| o.iter().map(|o| u64_of(&o["size"])).collect());
    let images = manifest["images"].as_array().unwrap();
    assert_eq!(u64_of(&dry["images"]["total"]), images.len() as u64, "{dry}");
    assert_eq!(u64_of(&dry["blobs"]), carried.len() as u64, "{dry}");
    assert_eq!(u64_of(&dry["omitted"]), omitted.len() as u64, "{dry}");
    assert_eq!(u64_of(&dry["bytes_after_receipt"]), carried.iter().sum::<u64>(), "{dry}");
    assert_eq!(u64_of(&dry["bytes_after_dedupe"]), carried.iter().chain(&omitted).sum::<u64>(), "{dry}");
    assert_eq!(u64_of(&dry["bytes_before_dedupe"]), images.iter().map(|i| u64_of(&i["total_size"])).sum::<u64>());
    let volumes: Vec<u64> = doc["volumes"].as_array().unwrap().iter().map(|v| u64_of(&v["size"])).collect();
    assert_eq!(dry["volumes"], serde_json::json!(volumes), "{dry}");
    assert_eq!(dry["bytes_in"], doc["bytes_in"]);
    assert_eq!(dry["bytes_stored"], doc["bytes_stored"]);
    images.len()
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_dry_run_figures_are_what_the_pack_then_writes_and_the_mapping_is_where_unpack_publishes() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let config = image_set(&dist, tmp.path());
    let mut reg = Registry::install();
    let out = tmp.path().join("bundle");
    let map = tmp.path().join("mapping.txt");
    let args: Vec<String> =
        ["--config", &config.display().to_string(), "--volume-size", "64KiB"].iter().map(|s| s.to_string()).collect();
    let mut dry_args = args.clone();
    dry_args.extend(["--mapping".into(), map.display().to_string(), "--mapping-dest".into()]);
    dry_args.push(format!("docker://{}", reg.host()));

    // A dry run on an empty cache: everything is to fetch, nothing is written to --out.
    let dry = dry_run(&dist, tmp.path(), &out, &dry_args);
    assert!(!out.exists(), "a dry run creates no --out");
    assert_eq!(dry["dry_run"], true);
    let kinds = &dry["images"];
    assert_eq!(kinds["total"], rel.components.len() + 3, "{dry}");
    assert_eq!((kinds["releases"].as_u64(), kinds["release_components"].as_u64()), (Some(1), Some(12)), "{dry}");
    assert_eq!(kinds["additional"], 2, "{dry}");
    let fetch = u64_of(&dry["fetch"]["bytes"]);
    assert!(fetch > 0 && u64_of(&dry["fetch"]["blobs"]) > 0, "{dry}");
    let volumes: Vec<u64> = dry["volumes"].as_array().unwrap().iter().map(u64_of).collect();
    assert!(volumes.len() > 3, "several volumes: {dry}");

    // The real pack writes exactly that.
    let doc = pack(&dist, tmp.path(), &out, "set", &args);
    let images = assert_written(&dry, &doc, &out);
    assert!(u64_of(&dry["bytes_before_dedupe"]) > u64_of(&dry["bytes_after_dedupe"]), "images share blobs");

    // Once packed, nothing is left to fetch, and a dry run leaves the bundle alone.
    let before = common::dir_contents(&out);
    let again = dry_run(&dist, tmp.path(), &tmp.path().join("elsewhere"), &args);
    assert_eq!((again["fetch"]["blobs"].as_u64(), again["fetch"]["bytes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(again["volumes"], dry["volumes"]);
    assert_eq!(common::dir_contents(&out), before);

    // mapping.txt: one line per image, the source as packed = where unpack --root puts it.
    let lines = mapping(&map);
    assert_eq!(lines.len(), images);
    let unpacked = unpack_root(tmp.path(), &out, &reg.root, &[]);
    assert_eq!(lines, published(&unpacked["registry"]["images"]));
    reg.serve(&[]);
    for (_, dest) in lines.iter().take(3) {
        let mut cmd = reg.skopeo("inspect");
        let o = cmd.arg("--raw").args(reg.skopeo_args()).arg(dest).output().unwrap();
        assert!(o.status.success(), "{dest}: {}", String::from_utf8_lossy(&o.stderr));
    }

    // …and where unpack --to docker://HOST/PREFIX pushes it.
    let Some(mirror) = Distribution::start() else { return };
    let mut push_args = args.clone();
    push_args.extend(["--mapping".into(), map.display().to_string(), "--mapping-dest".into()]);
    push_args.push(format!("docker://{}/site/mirror", mirror.host()));
    // (A dry run into --out that holds the bundle is refused as the pack would be.)
    dry_run(&dist, tmp.path(), &tmp.path().join("elsewhere"), &push_args);
    let pushed = unpack_to(tmp.path(), &out, &mirror, "site/mirror", &tmp.path().join("push"), &[]);
    assert_eq!(mapping(&map), published(&pushed["push"]["images"]));

    since_the_bundle(&dist, tmp.path(), &out, &unpacked);
}

/// After the bundle in `out` (`unpacked` into a root): extra/app:1 moves to another image
/// and extra/new:1 is added; a dry run `--since` the bundle, or `--have` a receipt of the
/// root, says so, and its figures (what is left out included) are what the differential
/// pack writes.
fn since_the_bundle(dist: &Distribution, dir: &Path, out: &Path, unpacked: &Value) {
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:app-01", layout.display()), "extra/app:1");
    dist.push(&format!("oci:{}:app-00", layout.display()), "extra/new:1");
    let host = dist.host();
    let config = dir.join("imageset.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}    - name: {host}/extra/new:1\n")).unwrap();
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--volume-size",
        "64KiB",
        "--since",
        &out.join("set.manifest.json").display().to_string(),
        "--have-key",
        &dir.join("keys/site.pub").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let second = dir.join("second");
    let dry = dry_run(dist, dir, &second, &args);
    let changes = &dry["changes"][0];
    let sources = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|i| i["source"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(sources(&changes["added"]), [format!("docker://{host}/extra/new:1")], "{changes}");
    assert_eq!(sources(&changes["moved"]), [format!("docker://{host}/extra/app:1")], "{changes}");
    assert_eq!(changes["removed"], serde_json::json!([]), "{changes}");
    assert!(u64_of(&dry["omitted"]) > 0, "{dry}");
    assert!(u64_of(&dry["bytes_after_receipt"]) < u64_of(&dry["bytes_after_dedupe"]), "{dry}");

    let doc = pack(dist, dir, &second, "set", &args);
    assert_written(&dry, &doc, &second);

    let receipt = receipt_of(dir, out, unpacked);
    let args = [&args[..4], &["--have".to_string(), receipt.display().to_string()]].concat();
    let third = dir.join("third");
    let dry = dry_run(dist, dir, &third, &args);
    let changes = &dry["changes"][0];
    let moved = &changes["moved"][0];
    assert_eq!(sources(&changes["added"]), ["extra/new:1"], "{changes}");
    assert_eq!(moved["source"], format!("docker://{host}/extra/app:1"), "{changes}");
    assert_eq!(moved["reference"], "extra/app:1", "{changes}");
    assert_eq!(changes["removed"], serde_json::json!([]), "{changes}");
    let doc = pack(dist, dir, &third, "set", &args);
    assert_written(&dry, &doc, &third);
}

/// A receipt (`DIR/root.receipt`) of a root that holds the bundle in `out` as `unpacked`
/// published it: its blobs, and a tag for each image at its reference.
fn receipt_of(dir: &Path, out: &Path, unpacked: &Value) -> PathBuf {
    use airlift::bundle::receipt::{Held, HeldTag, Receipt};
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("set.manifest.json")).unwrap()).unwrap();
    let entries = manifest["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "blob");
    let held = |e: &Value| Held {
        digest: e["digest"].as_str().unwrap().parse().unwrap(),
        size: u64_of(&e["size"]),
        repository: Some("extra/app".into()),
    };
    // An image published by digest is tagged sha256-HEX there.
    let tags = unpacked["registry"]["images"].as_array().unwrap().iter().map(|i| {
        let (_, path) = i["reference"].as_str().unwrap().split_once('/').unwrap();
        HeldTag { tag: path.replace("@sha256:", ":sha256-"), digest: i["digest"].as_str().unwrap().parse().unwrap() }
    });
    let receipt =
        Receipt::new(dir.join("root").display().to_string(), entries.map(held).collect(), vec![], tags.collect());
    let path = dir.join("root.receipt");
    receipt.write(&path, None).unwrap();
    path
}

#[test]
fn a_dry_run_counts_media_and_a_real_pack_without_a_key_is_refused() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let config = image_set(&dist, tmp.path());
    publish_release(&dist, tmp.path(), VERSION, 2);
    let out = tmp.path().join("bundle");
    let args: Vec<String> = vec!["--config".into(), config.display().to_string(), "--media".into(), "dvd".into()];
    let dry = dry_run(&dist, tmp.path(), &out, &args);
    assert_eq!(dry["volume_size"], 2_316_632_064u64, "{dry}");
    assert_eq!(dry["volumes"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["media"], serde_json::json!({ "kind": "dvd", "count": 1 }), "{dry}");
    // What a person reads: the same figures on stderr, nothing on stdout.
    let o = dry_run_command(&dist, tmp.path(), &out, &args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && stdout.is_empty(), "{stdout}{stderr}");
    let kinds = &dry["images"];
    for line in [
        format!("dry run: nothing is written to {}", out.display()),
        format!("{} image(s): 1 release(s), 12 release component(s), 0 catalog(s)", kinds["total"]),
        format!("{} blob(s) carried, 0 layer(s) left out: ", dry["blobs"]),
        format!("({} bytes) after the receipt", dry["bytes_after_receipt"]),
        format!("({} bytes) stored, 1 dvd medium(s)", dry["bytes_stored"]),
        "1 volume(s) of at most 2.2 GiB, ".to_string(),
    ] {
        assert!(stderr.contains(&line), "{line}\n{stderr}");
    }
    // The first dry run fetched the configs and manifests (to learn how they compress),
    // not the layers.
    let to_fetch = stderr.lines().find_map(|l| l.strip_prefix("to fetch: ")).unwrap_or_else(|| panic!("{stderr}"));
    let blobs: u64 = to_fetch.split(' ').next().unwrap().parse().unwrap();
    assert!(blobs > 0 && blobs < u64_of(&dry["fetch"]["blobs"]), "{to_fetch} after {dry}");
    // The mapping's default destination is a placeholder registry.
    let map = tmp.path().join("mapping.txt");
    let mut with_map = args.clone();
    with_map.extend(["--mapping".into(), map.display().to_string()]);
    dry_run(&dist, tmp.path(), &out, &with_map);
    let lines = mapping(&map);
    assert!(lines.iter().all(|(_, d)| d.starts_with("docker://mirror.invalid:8443/")), "{lines:?}");
    assert!(!out.exists());

    // Without --dry-run, --key is required (exit 2), and a real pack with it writes.
    let o = airlift().args(["pack", "--out"]).arg(&out).arg("--config").arg(&config).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--key"));
    let o = pack_command(&dist, tmp.path(), &out, "set", &args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("set.manifest.json").exists());
}

#[test]
fn a_dry_run_of_an_operator_catalog_is_what_the_pack_writes() {
    let Some(p) = crate::catalog::published() else { return };
    let tmp = common::tempdir();
    let config = crate::catalog::imageset(tmp.path(), &p.catalog.reference(), "");
    let out = tmp.path().join("bundle");
    let args: Vec<String> =
        ["--config", &config.display().to_string(), "--volume-size", "64KiB"].iter().map(|s| s.to_string()).collect();
    let dry = dry_run(&p.dist, tmp.path(), &out, &args);
    assert!(!out.exists(), "a dry run creates no --out");
    assert_eq!(dry["images"]["catalogs"], 1, "{dry}");
    assert!(u64_of(&dry["images"]["operators"]) > 0, "{dry}");
    let doc = pack(&p.dist, tmp.path(), &out, "set", &args);
    assert_written(&dry, &doc, &out);
}
