//! Operator catalogs end to end (issue 11): the fixture catalog of tests/common/catalog.rs
//! (five packages, JSON and YAML, whiteouts, two platforms) with its bundle and related
//! images, published in Debian's docker-registry; packed with image set files for each
//! filter case, listed, unpacked into a fresh root, pulled back with skopeo and unpacked
//! with umoci. Every expected set of kept bundles is written by hand from the fixture's
//! design (see the graph in tests/common/catalog.rs), never computed by airlift.
//! Bad catalogs are filtered from a directory (`airlift catalog filter`) or packed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde_json::{json, Value};

use crate::common::catalog::{self as fixture, Catalog, File, CONFIGS_LABEL};
use crate::common::cluster::{digest_mirrors, pack_command, unpack_root, yaml};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, airlift, run_ok, sha256_hex};

/// The fixture catalog published in a docker-registry, shared by the tests that run at the
/// same time (built once; the registry stops when the last of them drops it).
pub(crate) struct Published {
    pub(crate) dist: Distribution,
    pub(crate) catalog: Catalog,
    _tmp: tempfile::TempDir,
}

pub(crate) fn published() -> Option<Arc<Published>> {
    static SHARED: Mutex<Weak<Published>> = Mutex::new(Weak::new());
    if !common::have("skopeo") {
        return None;
    }
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.upgrade() {
        return Some(p);
    }
    let dist = Distribution::start()?;
    let tmp = common::tempdir();
    let catalog = fixture::publish(&dist, tmp.path());
    let p = Arc::new(Published { dist, catalog, _tmp: tmp });
    *slot = Arc::downgrade(&p);
    Some(p)
}

/// An image set file (v2alpha1) in `dir` with one `mirror.operators` entry for `catalog`;
/// `entry` holds the entry's other lines, each indented by six spaces.
pub(crate) fn imageset(dir: &Path, catalog: &str, entry: &str) -> PathBuf {
    imageset_of("v2alpha1", dir, catalog, entry)
}

/// [`imageset`] with `apiVersion: mirror.openshift.io/API`.
pub(crate) fn imageset_of(api: &str, dir: &Path, catalog: &str, entry: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("imageset.yaml");
    std::fs::write(
        &path,
        format!(
            "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/{api}\n\
             mirror:\n  operators:\n    - catalog: {catalog}\n{entry}"
        ),
    )
    .unwrap();
    path
}

/// One pack of the fixture catalog with one operators entry, as `list --json` shows it.
pub(crate) struct Packed {
    pub(crate) bundle: PathBuf,
    /// `catalogs[0]` of `list --json`.
    pub(crate) catalog: Value,
    /// The digests of every image in the bundle.
    pub(crate) images: BTreeSet<String>,
    /// What pack said on stderr.
    pub(crate) stderr: String,
    /// The whole `list --json` document.
    pub(crate) list: Value,
}

impl Packed {
    /// The names of the kept bundles.
    pub(crate) fn kept(&self) -> BTreeSet<String> {
        self.catalog["bundles"]
            .as_array()
            .unwrap_or_else(|| panic!("no catalogs[0].bundles: {}", self.catalog))
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Pack's messages mention `needed` (a dependency) and `by` (the bundle needing it) on
    /// one line.
    fn says_dependency(&self, needed: &str, by: &str) {
        assert!(
            self.stderr.lines().any(|l| l.contains(needed) && l.contains(by)),
            "pack does not say that {by} needs {needed}:\n{}",
            self.stderr
        );
    }

    /// `verify --json` (key `DIR/keys/site.pub`) shows the catalog `list --json` shows.
    pub(crate) fn assert_verify_agrees(&self, dir: &Path) {
        let o = airlift()
            .args(["verify", "--json"])
            .arg(&self.bundle)
            .arg("--key")
            .arg(dir.join("keys/site.pub"))
            .output()
            .unwrap();
        assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stderr));
        let verify: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(verify["catalogs"], json!([self.catalog]), "verify --json and list --json");
    }

    pub(crate) fn rebuilt(&self) -> String {
        self.catalog["rebuilt"].as_str().unwrap_or_else(|| panic!("no rebuilt digest: {}", self.catalog)).to_string()
    }
}

/// `airlift pack --json --config CONFIG` from `p`'s registry into `dir/bundle`.
pub(crate) fn pack_config(p: &Published, dir: &Path, config: &Path) -> std::process::Output {
    let args = ["--config".into(), config.display().to_string()];
    pack_command(&p.dist, dir, &dir.join("bundle"), "operators", &args).output().unwrap()
}

/// The stderr of a pack into `dir/bundle` refused as bad input (exit 2, no bundle written).
pub(crate) fn refused(o: &std::process::Output, dir: &Path) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!dir.join("bundle/operators.manifest.json").exists());
    err
}

/// Pack the fixture catalog with `entry` (see [`imageset`]) into `dir/bundle`.
pub(crate) fn pack_catalog(p: &Published, dir: &Path, entry: &str) -> Packed {
    pack_catalog_of("v2alpha1", p, &p.catalog.reference(), dir, entry)
}

/// Pack `catalog` with `entry` in an image set file of `api` (see [`imageset_of`]) from
/// `p`'s registry into `dir/bundle`.
pub(crate) fn pack_catalog_of(api: &str, p: &Published, catalog: &str, dir: &Path, entry: &str) -> Packed {
    let config = imageset_of(api, dir, catalog, entry);
    let bundle = dir.join("bundle");
    let o = pack_config(p, dir, &config);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "pack failed: {stderr}");
    let list = run_ok(
        std::process::Command::new(common::airlift_path())
            .args(["list", "--json"])
            .arg(&bundle)
            .arg("--key")
            .arg(dir.join("keys/site.pub")),
    );
    let list: Value = serde_json::from_str(&list).unwrap();
    let catalogs = list["catalogs"].as_array().unwrap_or_else(|| panic!("list --json has no catalogs: {list}"));
    assert_eq!(catalogs.len(), 1, "{list}");
    let images = list["images"].as_array().unwrap().iter().map(|i| i["digest"].as_str().unwrap().to_string()).collect();
    let catalog = catalogs[0].clone();
    Packed { bundle, catalog, images, stderr, list }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn digest_of(image: &str) -> String {
    image.split_once('@').unwrap().1.to_string()
}

/// The kept bundles are `want`, each listed with its package, version and image, and the
/// bundle holds exactly their bundle and related images plus the catalog `catalog_digest`.
pub(crate) fn assert_kept(p: &Published, packed: &Packed, want: &[&str], catalog_digest: &str) {
    assert_eq!(packed.kept(), names(want), "kept bundles of {}", packed.catalog["filter"]);
    for b in packed.catalog["bundles"].as_array().unwrap() {
        let f = &p.catalog.bundles[b["name"].as_str().unwrap()];
        assert_eq!(b["package"].as_str(), Some(f.package.as_str()), "{b}");
        assert_eq!(b["version"].as_str(), Some(f.version.as_str()), "{b}");
        assert_eq!(b["image"].as_str(), Some(f.image.as_str()), "{b}");
    }
    let mut images: BTreeSet<String> = p.catalog.images_of(want.iter().copied()).iter().map(|i| digest_of(i)).collect();
    images.insert(catalog_digest.to_string());
    assert_eq!(packed.images, images, "images packed for {}", packed.catalog["filter"]);
}

#[test]
fn heads_only_keeps_the_head_of_every_channel_of_what_the_upper_layer_leaves() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let packed = pack_catalog(&p, tmp.path(), "");
    // No packages, no `full`: the head of every channel of every package.
    // In: alpha.v2.0.0 (head of alpha/stable), alpha.v2.1.0 (alpha/fast), beta.v0.3.0
    // (beta/stable), beta.v0.1.0 (beta/old), gamma.v1.5.0 (gamma/stable), gamma.v2.0.0
    // (gamma/candidate), delta.v3.1.0 (delta/stable). The dependencies are already in:
    // alpha.v2.1.0 needs gamma >=1.0.0 <2.0.0 (gamma.v1.5.0), beta.v0.3.0 needs Widget
    // (delta.v3.1.0). Out: every replaced or skipped bundle; alpha.v0.0.1 (head of
    // alpha/legacy, whose file is whited out) and stale.v1.0.0 (package whited out).
    let want =
        ["alpha.v2.0.0", "alpha.v2.1.0", "beta.v0.3.0", "beta.v0.1.0", "gamma.v1.5.0", "gamma.v2.0.0", "delta.v3.1.0"];
    let rebuilt = packed.rebuilt();
    assert_ne!(rebuilt, p.catalog.digest, "a filtered catalog is rebuilt");
    assert_kept(&p, &packed, &want, &rebuilt);
    let c = &packed.catalog;
    assert_eq!(c["digest"].as_str(), Some(p.catalog.digest.as_str()), "{c}");
    assert!(c["source"].as_str().is_some_and(|s| s.contains(&p.catalog.reference())), "{c}");
    // Without targetCatalog/targetTag the catalog keeps its repository and tag.
    assert!(c["target"].as_str().is_some_and(|t| t.ends_with("catalog/operator-index:v4.16")), "{c}");
    assert_eq!(c["filter"]["catalog"].as_str().map(|s| s.contains("catalog/operator-index")), Some(true), "{c}");

    // The gate sees the same catalogs as list.
    packed.assert_verify_agrees(tmp.path());
}

#[test]
fn a_channel_range_keeps_what_replaces_and_skips_reach_inside_the_range() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let entry = "      packages:\n        - name: alpha\n          channels:\n            - name: stable\n\
                 \x20             minVersion: 1.1.0\n              maxVersion: 1.2.0\n";
    let packed = pack_catalog(&p, tmp.path(), entry);
    // alpha/stable from its head 2.0.0 (above the range, out) along `replaces`: 1.2.0 (in),
    // 1.1.0 (in), 1.0.0 (below, out); 1.1.1 is reached by 1.2.0's `skips` (in). Nothing
    // of alpha/fast. None of these has a dependency.
    let want = ["alpha.v1.1.0", "alpha.v1.1.1", "alpha.v1.2.0"];
    assert_kept(&p, &packed, &want, &packed.rebuilt());
}

#[test]
fn a_package_range_adds_the_required_package_unless_dependencies_are_skipped() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let entry = "      packages:\n        - name: alpha\n          minVersion: 1.2.0\n";
    let packed = pack_catalog(&p, &tmp.path().join("with"), entry);
    // The range applies to both channels of alpha. stable: 2.0.0 and 1.2.0 (in), 1.1.0 and
    // 1.0.0 (below), 1.1.1 (skipped by 1.2.0, below). fast: 2.1.0 and 2.0.0 (in).
    // alpha.v2.1.0 requires package gamma >=1.0.0 <2.0.0: the newest in range on gamma's
    // default channel (stable) is gamma.v1.5.0 (gamma.v2.0.0 is out of range and on
    // candidate).
    let want = ["alpha.v1.2.0", "alpha.v2.0.0", "alpha.v2.1.0", "gamma.v1.5.0"];
    assert_kept(&p, &packed, &want, &packed.rebuilt());
    packed.says_dependency("gamma.v1.5.0", "alpha.v2.1.0");

    let skipped = pack_catalog(&p, &tmp.path().join("skip"), &format!("{entry}      skipDependencies: true\n"));
    // The same without the dependency.
    let want = ["alpha.v1.2.0", "alpha.v2.0.0", "alpha.v2.1.0"];
    assert_kept(&p, &skipped, &want, &skipped.rebuilt());
    // Reported, not added.
    skipped.says_dependency("gamma.v1.5.0", "alpha.v2.1.0");
}

#[test]
fn full_with_packages_keeps_every_bundle_of_the_channel_and_skip_dependencies_leaves_the_gvk_provider_out() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let entry = "      full: true\n      skipDependencies: true\n      packages:\n        - name: beta\n\
                 \x20         channels:\n            - name: stable\n";
    let packed = pack_catalog(&p, tmp.path(), entry);
    // Every bundle of beta/stable: 0.1.0, 0.2.0, 0.3.0; beta.v0.3.0's Widget provider
    // (delta.v3.1.0) is only reported.
    assert_kept(&p, &packed, &["beta.v0.1.0", "beta.v0.2.0", "beta.v0.3.0"], &packed.rebuilt());
    packed.says_dependency("delta.v3.1.0", "beta.v0.3.0");
}

#[test]
fn a_whole_catalog_is_carried_unchanged() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let packed = pack_catalog(&p, tmp.path(), "      full: true\n");
    // `full: true` without packages: the catalog as published, every bundle the config
    // directory shows once the whiteouts are applied (not alpha.v0.0.1, not stale.v1.0.0).
    let want: Vec<&str> = [
        "alpha.v1.0.0",
        "alpha.v1.1.0",
        "alpha.v1.1.1",
        "alpha.v1.2.0",
        "alpha.v2.0.0",
        "alpha.v2.1.0",
        "beta.v0.1.0",
        "beta.v0.2.0",
        "beta.v0.3.0",
        "gamma.v1.0.0",
        "gamma.v1.5.0",
        "gamma.v2.0.0",
        "delta.v3.0.0",
        "delta.v3.1.0",
    ]
    .to_vec();
    assert_eq!(packed.catalog["rebuilt"], Value::Null, "{}", packed.catalog);
    assert_eq!(packed.catalog["digest"].as_str(), Some(p.catalog.digest.as_str()));
    assert_eq!(packed.catalog["target"].as_str(), Some(p.catalog.reference().as_str()));
    assert_kept(&p, &packed, &want, &p.catalog.digest);
}

#[test]
fn an_unknown_package_is_refused_by_name() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let config = imageset(tmp.path(), &p.catalog.reference(), "      packages:\n        - name: no-such-operator\n");
    let err = refused(&pack_config(&p, tmp.path(), &config), tmp.path());
    assert!(err.contains("no-such-operator"), "{err}");
}

/// `full: true` on beta/stable with a target: every bundle of the channel, the GVK
/// provider added; packed twice to the same catalog digest; unpacked into a fresh root,
/// where the rebuilt catalog pulls back equal to the filtered config and every image pulls
/// through the generated mirror set.
#[test]
fn a_filtered_catalog_is_rebuilt_reproducibly_and_unpacks_into_a_working_mirror() {
    let Some(p) = published() else { return };
    if !common::have("umoci") {
        return;
    }
    let tmp = common::tempdir();
    let entry = "      full: true\n      targetCatalog: mirrored/filtered-index\n      targetTag: v1-filtered\n\
                 \x20     packages:\n        - name: beta\n          channels:\n            - name: stable\n";
    let packed = pack_catalog(&p, &tmp.path().join("one"), entry);
    // Every bundle of beta/stable, and beta.v0.3.0's Widget provider: the newest bundle
    // providing it on delta's default channel, delta.v3.1.0 (not delta.v3.0.0).
    let want = ["beta.v0.1.0", "beta.v0.2.0", "beta.v0.3.0", "delta.v3.1.0"];
    let rebuilt = packed.rebuilt();
    assert_kept(&p, &packed, &want, &rebuilt);
    packed.says_dependency("delta.v3.1.0", "beta.v0.3.0");
    assert_eq!(packed.catalog["filter"]["targetCatalog"], "mirrored/filtered-index", "{}", packed.catalog);
    assert_eq!(packed.catalog["filter"]["targetTag"], "v1-filtered", "{}", packed.catalog);
    assert!(
        packed.catalog["target"].as_str().is_some_and(|t| t.ends_with("mirrored/filtered-index:v1-filtered")),
        "{}",
        packed.catalog
    );
    // Another run, another output and cache: the same bytes.
    let again = pack_catalog(&p, &tmp.path().join("two"), entry);
    assert_eq!(again.rebuilt(), rebuilt, "the rebuilt catalog differs between two runs");

    let mut reg = Registry::install();
    let doc = unpack_root(&tmp.path().join("one"), &packed.bundle, &reg.root, &[]);
    reg.serve(&[]);
    let mirrored = format!("localhost:{}/mirrored/filtered-index", reg.port);
    let mut cmd = reg.skopeo("inspect");
    cmd.arg("--raw").args(reg.skopeo_args()).arg(reg.docker_ref("mirrored/filtered-index:v1-filtered"));
    assert_eq!(format!("sha256:{}", sha256_hex(run_ok(&mut cmd).as_bytes())), rebuilt, "the target tag");

    let pulled = tmp.path().join("pulled");
    let mut cmd = reg.skopeo("copy");
    cmd.args(["--all", "--quiet"]).args(reg.skopeo_src_args());
    run_ok(cmd.arg(format!("docker://{mirrored}@{rebuilt}")).arg(format!("oci:{}:rebuilt", pulled.display())));
    assert_rebuilt_image(&p.catalog.layout, &pulled);
    assert_rebuilt_configs(&p, &reg, &mirrored, &rebuilt, tmp.path());
    let digest_at = |reference: &str| {
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(format!("docker://{reference}"));
        format!("sha256:{}", sha256_hex(run_ok(&mut cmd).as_bytes()))
    };
    assert_cluster_files(&p, &digest_at, &doc, &format!("{mirrored}@{rebuilt}"), &want);
}

/// Where the OCI layout `dir` keeps the blob `digest`.
pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// A blob of the OCI layout `dir`, parsed.
pub(crate) fn blob_json(dir: &Path, digest: &str) -> Value {
    let path = blob_path(dir, digest);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The platform manifests of the index the layout `dir` names first, by architecture.
fn platform_manifests(dir: &Path) -> BTreeMap<String, Value> {
    let top: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let index = blob_json(dir, top["manifests"][0]["digest"].as_str().unwrap());
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux", "{m}");
            (m["platform"]["architecture"].as_str().unwrap().to_string(), blob_json(dir, m["digest"].as_str().unwrap()))
        })
        .collect()
}

/// Each platform of the rebuilt catalog (pulled into the layout `pulled`) is the original
/// (in `original`) plus two layers, their diff_ids and history, `Cmd ["serve","/configs"]`,
/// the entrypoint and the configs label kept.
fn assert_rebuilt_image(original: &Path, pulled: &Path) {
    let before = platform_manifests(original);
    let after = platform_manifests(pulled);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["amd64", "arm64"]);
    for (arch, m) in &after {
        let old = &before[arch];
        let layers = m["layers"].as_array().unwrap();
        let old_layers = old["layers"].as_array().unwrap();
        assert_eq!(layers.len(), old_layers.len() + 2, "{arch}: {m}");
        assert_eq!(&layers[..old_layers.len()], &old_layers[..], "{arch}: the original layers come first");
        let config = blob_json(pulled, m["config"]["digest"].as_str().unwrap());
        let old_config = blob_json(original, old["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"].as_str(), Some(arch.as_str()));
        assert_eq!(config["config"]["Cmd"], json!(["serve", "/configs"]), "{arch}");
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/opm"]), "{arch}");
        assert_eq!(config["config"]["Labels"][CONFIGS_LABEL], "/configs", "{arch}");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), layers.len(), "{arch}");
        assert_eq!(&diff_ids[..old_layers.len()], &old_config["rootfs"]["diff_ids"].as_array().unwrap()[..]);
        assert_eq!(
            config["history"].as_array().unwrap().len(),
            old_config["history"].as_array().unwrap().len() + 2,
            "{arch}"
        );
    }
}

/// The rebuilt catalog's /configs, pulled for linux/arm64 and unpacked by umoci (which
/// applies the whiteouts), holds exactly the filtered config: beta with its stable channel
/// and the deprecation of the kept beta.v0.1.0 (not that of the dropped channel `old`),
/// and delta with delta.v3.1.0 alone.
fn assert_rebuilt_configs(p: &Published, reg: &Registry, mirrored: &str, rebuilt: &str, dir: &Path) {
    let arm = dir.join("arm64");
    let mut cmd = reg.skopeo("copy");
    cmd.args(["--quiet", "--override-arch", "arm64"]).args(reg.skopeo_src_args());
    run_ok(cmd.arg(format!("docker://{mirrored}@{rebuilt}")).arg(format!("oci:{}:arm64", arm.display())));
    let bundle = dir.join("umoci");
    run_ok(
        std::process::Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:arm64", arm.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/opm").is_file(), "the base layer is kept");
    // The serve cache the original Cmd named (--cache-dir=/tmp/cache) was built from the
    // unfiltered config: gone.
    assert!(!rootfs.join("tmp/cache").exists(), "the pre-built cache is dropped");
    let objects = fixture::read_json_tree(&rootfs.join("configs"));
    let files: BTreeSet<&str> = objects.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, BTreeSet::from(["beta/catalog.json", "delta/catalog.json"]));
    let mut packages = BTreeMap::new();
    let mut channels = BTreeMap::new();
    let mut bundles = BTreeSet::new();
    let mut deprecations = BTreeSet::new();
    for (file, o) in &objects {
        let s = |k: &str| o[k].as_str().unwrap_or_else(|| panic!("{file}: no {k} in {o}")).to_string();
        match o["schema"].as_str() {
            Some("olm.package") => {
                packages.insert(s("name"), s("defaultChannel"));
            }
            Some("olm.channel") => {
                let entries: BTreeSet<String> =
                    o["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
                if s("package") == "beta" {
                    // Every bundle of beta/stable is kept: its upgrade graph as published.
                    let mut published = o["entries"].as_array().unwrap().clone();
                    published.sort_by_key(|e| e["name"].to_string());
                    assert_eq!(
                        Value::Array(published),
                        json!([{"name": "beta.v0.1.0"}, {"name": "beta.v0.2.0", "replaces": "beta.v0.1.0"},
                               {"name": "beta.v0.3.0", "replaces": "beta.v0.2.0"}]),
                        "{file}"
                    );
                }
                channels.insert((s("package"), s("name")), entries);
            }
            Some("olm.bundle") => {
                let f = &p.catalog.bundles[&s("name")];
                assert_eq!(s("image"), f.image, "{file}: {o}");
                let related: BTreeSet<&str> =
                    o["relatedImages"].as_array().unwrap().iter().map(|r| r["image"].as_str().unwrap()).collect();
                assert_eq!(related, BTreeSet::from([f.image.as_str(), f.related.as_str()]), "{file}: {o}");
                bundles.insert(s("name"));
            }
            Some("olm.deprecations") => {
                for e in o["entries"].as_array().unwrap() {
                    let r = &e["reference"];
                    let name = r["name"].as_str().unwrap().to_string();
                    deprecations.insert((s("package"), r["schema"].as_str().unwrap().to_string(), name));
                }
            }
            other => panic!("{file}: unexpected schema {other:?}"),
        }
        let package = if o["schema"] == "olm.package" { s("name") } else { s("package") };
        assert_eq!(file, &format!("{package}/catalog.json"), "{o}");
    }
    let s = |x: &str| x.to_string();
    assert_eq!(packages, BTreeMap::from([(s("beta"), s("stable")), (s("delta"), s("stable"))]));
    assert_eq!(
        channels,
        BTreeMap::from([
            ((s("beta"), s("stable")), names(&["beta.v0.1.0", "beta.v0.2.0", "beta.v0.3.0"])),
            ((s("delta"), s("stable")), names(&["delta.v3.1.0"])),
        ])
    );
    assert_eq!(bundles, names(&["beta.v0.1.0", "beta.v0.2.0", "beta.v0.3.0", "delta.v3.1.0"]));
    assert_eq!(deprecations, BTreeSet::from([(s("beta"), s("olm.bundle"), s("beta.v0.1.0"))]));
}

/// The results of unpack: every kept bundle and related image pulls by digest through the
/// ImageDigestMirrorSet; the CatalogSource and the ClusterCatalog point at `image` (the
/// mirrored catalog by digest); OperatorHub disables the default sources. `digest_at`
/// gives the digest of the manifest at a mirror reference (`HOST/REPO@DIGEST` or
/// `HOST/REPO:TAG`). Returns the CatalogSource.
pub(crate) fn assert_cluster_files(
    p: &Published,
    digest_at: &dyn Fn(&str) -> String,
    doc: &Value,
    image: &str,
    kept: &[&str],
) -> serde_yaml_ng::Value {
    let results = PathBuf::from(doc["results"]["dir"].as_str().expect("results.dir in the unpack document"));
    let files: BTreeMap<String, PathBuf> = doc["results"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), PathBuf::from(f["path"].as_str().unwrap())))
        .collect();
    let file = |kind: &str| -> PathBuf {
        let path = files.get(kind).unwrap_or_else(|| panic!("no {kind} among the results: {doc}"));
        if path.is_absolute() {
            path.clone()
        } else {
            results.join(path)
        }
    };
    let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
    for i in p.catalog.images_of(kept.iter().copied()) {
        // Pulled as a cluster would: through the mirror the set gives for its repository.
        let (repo, digest) = i.split_once('@').unwrap();
        let (_, to) = idms.iter().find(|(s, _)| s == repo).unwrap_or_else(|| panic!("no mirror for {repo}: {idms:?}"));
        assert_eq!(to.len(), 1, "{repo}: {to:?}");
        assert_eq!(digest_at(&format!("{}@{digest}", to[0])), digest, "{i} via {}", to[0]);
        // Named by digest only, so also tagged sha256-HEX (registries that prune untagged
        // manifests keep it).
        let tag = format!("{}:{}", to[0], digest.replace(':', "-"));
        assert_eq!(digest_at(&tag), digest, "{tag}");
    }
    // Each file is named after the object it holds.
    let named = |kind: &str, object: &serde_yaml_ng::Value| {
        let name = object["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{kind} has no metadata.name"));
        assert_eq!(file(kind).file_name().unwrap().to_string_lossy(), format!("{kind}-{name}.yaml"));
    };
    let cs = yaml(&file("catalogsource"));
    named("catalogsource", &cs);
    assert_eq!(cs["apiVersion"].as_str(), Some("operators.coreos.com/v1alpha1"));
    assert_eq!(cs["kind"].as_str(), Some("CatalogSource"));
    assert_eq!(cs["metadata"]["namespace"].as_str(), Some("openshift-marketplace"));
    assert!(cs["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(cs["spec"]["sourceType"].as_str(), Some("grpc"));
    assert_eq!(cs["spec"]["image"].as_str(), Some(image));
    let cc = yaml(&file("clustercatalog"));
    named("clustercatalog", &cc);
    assert_eq!(cc["apiVersion"].as_str(), Some("olm.operatorframework.io/v1"));
    assert_eq!(cc["kind"].as_str(), Some("ClusterCatalog"));
    assert!(cc["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(cc["spec"]["source"]["type"].as_str(), Some("Image"));
    assert_eq!(cc["spec"]["source"]["image"]["ref"].as_str(), Some(image));
    let hub = yaml(&file("operatorhub"));
    assert_eq!(hub["apiVersion"].as_str(), Some("config.openshift.io/v1"));
    assert_eq!(hub["kind"].as_str(), Some("OperatorHub"));
    assert_eq!(hub["metadata"]["name"].as_str(), Some("cluster"));
    assert_eq!(hub["spec"]["disableAllDefaultSources"].as_bool(), Some(true));
    cs
}

/// A catalog image made of `layers` with the configs `label`, pushed as `name`; packing it
/// fails with exit 2 and a message holding each of `needles`.
fn assert_pack_refuses(p: &Published, name: &str, label: Option<&str>, layers: &[Vec<File>], needles: &[&str]) {
    let tmp = common::tempdir();
    let layout = fixture::catalog_layout(&tmp.path().join(name), label, layers);
    let tag = format!("catalog/{name}:v1");
    p.dist.push(&format!("oci:{}:catalog", layout.display()), &tag);
    let config = imageset(&tmp.path().join("pack"), &format!("{}/{tag}", p.dist.host()), "");
    let err = refused(&pack_config(p, tmp.path(), &config), tmp.path());
    for n in needles {
        assert!(err.contains(n), "{name}: the error does not name {n}: {err}");
    }
}

/// A minimal valid catalog: package omega, channel stable with omega.v1.0.0, and bundles
/// omega.v1.0.0 … omega.v1.3.0 for the broken channels to use.
fn omega(root: &str) -> Vec<File> {
    let bundle = |v: &str| {
        json!({"schema": "olm.bundle", "name": format!("omega.v{v}"), "package": "omega",
               "image": format!("example.com/omega/bundle@sha256:{}", sha256_hex(v.as_bytes())),
               "properties": [{"type": "olm.package", "value": {"packageName": "omega", "version": v}}]})
    };
    let mut objects = vec![
        json!({"schema": "olm.package", "name": "omega", "defaultChannel": "stable"}),
        fixture::channel("omega", "stable", json!([{"name": "omega.v1.0.0"}])),
    ];
    objects.extend(["1.0.0", "1.1.0", "1.2.0", "1.3.0"].map(bundle));
    vec![(format!("{root}omega/catalog.json"), fixture::json_stream(&objects))]
}

#[test]
fn a_catalog_image_without_the_configs_label_or_without_configs_is_refused() {
    let Some(p) = published() else { return };
    assert_pack_refuses(&p, "unlabelled", None, &[omega("configs/")], &["catalog/unlabelled", CONFIGS_LABEL]);
    assert_pack_refuses(&p, "noconfigs", Some("/configs"), &[omega("database/")], &["catalog/noconfigs", "/configs"]);
}

/// `airlift catalog filter` on the omega catalog plus `extra` files (heads only, the
/// default filter); returns stderr after asserting exit 2.
fn filter_refuses(extra: Vec<File>) -> String {
    let tmp = common::tempdir();
    let dir = tmp.path().join("configs");
    fixture::write_tree(&dir, &omega(""));
    fixture::write_tree(&dir, &extra);
    let config = imageset(tmp.path(), "example.com/omega/index:v1", "");
    let o = airlift()
        .args(["catalog", "filter"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    err
}

#[test]
fn omega_alone_filters_cleanly_so_each_refusal_comes_from_the_file_added() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("configs");
    fixture::write_tree(&dir, &omega(""));
    let config = imageset(tmp.path(), "example.com/omega/index:v1", "");
    let out = tmp.path().join("out");
    airlift()
        .args(["catalog", "filter"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let bundles: BTreeSet<String> = fixture::read_json_tree(&out)
        .into_iter()
        .filter(|(_, o)| o["schema"] == "olm.bundle")
        .map(|(_, o)| o["name"].as_str().unwrap().to_string())
        .collect();
    // The head of omega/stable, its only entry.
    assert_eq!(bundles, names(&["omega.v1.0.0"]));
}

#[test]
fn malformed_json_is_refused_naming_the_file() {
    let err =
        filter_refuses(vec![("omega/broken.json".into(), br#"{"schema": "olm.bundle", "name": "omega.v9""#.to_vec())]);
    assert!(err.contains("broken.json"), "{err}");
}

#[test]
fn malformed_yaml_is_refused_naming_the_file() {
    let err = filter_refuses(vec![("omega/broken.yaml".into(), b"schema: olm.channel\nname: [unclosed\n".to_vec())]);
    assert!(err.contains("broken.yaml"), "{err}");
}

#[test]
fn a_channel_with_two_heads_is_refused_naming_it() {
    // 1.1.0 and 1.2.0 both replace 1.0.0 and nothing replaces either: two heads.
    let channel = fixture::channel(
        "omega",
        "forked",
        json!([{"name": "omega.v1.0.0"}, {"name": "omega.v1.1.0", "replaces": "omega.v1.0.0"},
               {"name": "omega.v1.2.0", "replaces": "omega.v1.0.0"}]),
    );
    let err = filter_refuses(vec![("omega/forked.json".into(), fixture::json_stream(&[channel]))]);
    for n in ["forked", "omega", "forked.json"] {
        assert!(err.contains(n), "the error does not name {n}: {err}");
    }
}

#[test]
fn a_replaces_cycle_is_refused_naming_the_channel() {
    // Head 1.3.0 (nothing replaces it), then 1.2.0 → 1.1.0 → 1.0.0 → 1.2.0 again.
    let channel = fixture::channel(
        "omega",
        "looping",
        json!([{"name": "omega.v1.0.0", "replaces": "omega.v1.2.0"}, {"name": "omega.v1.1.0", "replaces": "omega.v1.0.0"},
               {"name": "omega.v1.2.0", "replaces": "omega.v1.1.0"}, {"name": "omega.v1.3.0", "replaces": "omega.v1.2.0"}]),
    );
    let err = filter_refuses(vec![("omega/looping.json".into(), fixture::json_stream(&[channel]))]);
    for n in ["looping", "omega", "looping.json"] {
        assert!(err.contains(n), "the error does not name {n}: {err}");
    }
    assert!(err.to_lowercase().contains("cycle"), "{err}");
}

#[test]
fn a_bundle_without_an_image_is_refused_naming_it() {
    let bundle = json!({"schema": "olm.bundle", "name": "omega.v2.0.0", "package": "omega",
                        "properties": [{"type": "olm.package", "value": {"packageName": "omega", "version": "2.0.0"}}]});
    let channel = fixture::channel("omega", "next", json!([{"name": "omega.v2.0.0"}]));
    let err = filter_refuses(vec![("omega/noimage.json".into(), fixture::json_stream(&[channel, bundle]))]);
    for n in ["omega.v2.0.0", "noimage.json"] {
        assert!(err.contains(n), "the error does not name {n}: {err}");
    }
}

/// A catalog image (built at `dir`) of one package NAME whose channel `stable` holds one
/// bundle NAME.v1.0.0 of `image`, with one related image `related`; pushed as
/// `catalog/NAME:v1`. Returns its reference `HOST/catalog/NAME:v1` and digest.
pub(crate) fn publish_one_bundle(
    p: &Published,
    dir: &Path,
    name: &str,
    image: &str,
    related: &str,
) -> (String, String) {
    let bundle = format!("{name}.v1.0.0");
    let objects = [
        json!({"schema": "olm.package", "name": name, "defaultChannel": "stable"}),
        fixture::channel(name, "stable", json!([{"name": bundle}])),
        json!({"schema": "olm.bundle", "name": bundle, "package": name, "image": image,
               "properties": [{"type": "olm.package", "value": {"packageName": name, "version": "1.0.0"}}],
               "relatedImages": [{"name": "operator", "image": related}]}),
    ];
    let files = vec![(format!("configs/{name}/catalog.json"), fixture::json_stream(&objects))];
    let layout = fixture::catalog_layout(dir, Some("/configs"), &[files]);
    let digest = p.dist.push(&format!("oci:{}:catalog", layout.display()), &format!("catalog/{name}:v1"));
    (format!("{}/catalog/{name}:v1", p.dist.host()), digest)
}

#[test]
fn a_related_image_named_by_tag_only_is_packed_by_that_tag_with_a_warning() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    // One package whose only bundle reuses alpha.v1.0.0's bundle image and names its
    // operator image by tag. glue's choice (trip/catalogs.rs, as oc-mirror continues):
    // pack it by that tag and warn, naming it.
    let alpha = &p.catalog.bundles["alpha.v1.0.0"];
    let tagged = format!("{}/operators/alpha-operator:v1.0.0", p.dist.host());
    let catalog = publish_one_bundle(&p, &tmp.path().join("layout"), "tagged", &alpha.image, &tagged).0;
    let config = imageset(&tmp.path().join("pack"), &catalog, "");
    let o = pack_config(&p, tmp.path(), &config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning") && err.contains(&tagged) && err.contains("tag"), "{err}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sources: BTreeSet<&str> =
        doc["images"].as_array().unwrap().iter().map(|i| i["source"].as_str().unwrap()).collect();
    assert!(sources.contains(format!("docker://{tagged}").as_str()), "{doc}");
    assert!(sources.contains(format!("docker://{}", alpha.image).as_str()), "{doc}");
}
