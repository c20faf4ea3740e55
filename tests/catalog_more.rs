//! Operator catalogs end to end, continued (issue 11): the filter rules' refusals, a range
//! bridged by an out-of-range bundle, v1alpha2 spellings and `airlift catalog filter
//! --json`, on a small catalog on disk (`sigma`, below); and on the shared fixture of
//! tests/catalog.rs: `unpack --to` another registry, per-catalog `platforms`,
//! `targetCatalogSourceTemplate`, and the filter as `list --json` and `verify --json` show
//! it. Expected sets are written by hand from the graphs, never computed by airlift.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::catalog::{
    assert_cluster_files, assert_kept, blob_json, blob_path, imageset, imageset_of, pack_catalog, pack_catalog_of,
    pack_config, publish_one_bundle, published, refused, Published,
};
use crate::common::catalog::{self as fixture, File};
use crate::common::cluster::{digest_mirrors, unpack_root, unpack_to, yaml};
use crate::common::registry::Registry;
use crate::common::{self, airlift, run_ok, sha256_hex};

/// The catalog `sigma` (one package, JSON), as (path, bytes) under a config directory.
/// Channel heads marked *; the bundles' versions are their names' (`sigma.v0.9.0` is 0.9.0):
/// - `stable` (the default): 1.0.0 ← 1.1.0 ← 0.9.0 ← 1.2.0 ← 1.3.0* — 0.9.0 is an
///   out-of-order hotfix in the middle of the `replaces` chain;
/// - `fast`: 1.3.0 ← 2.0.0*; 2.0.0 requires package `absent` (not in the catalog);
/// - deprecations: the package itself, channels `fast` and `stable`, bundles 1.0.0 and 0.9.0.
///
/// Every bundle image is `example.com/sigma/bundle@sha256:<sha256 of the version>`; no
/// related images.
fn sigma() -> Vec<File> {
    let bundle = |v: &str, extra: Vec<Value>| {
        let mut properties = vec![json!({"type": "olm.package", "value": {"packageName": "sigma", "version": v}})];
        properties.extend(extra);
        json!({"schema": "olm.bundle", "name": format!("sigma.v{v}"), "package": "sigma", "image": sigma_image(v),
               "properties": properties})
    };
    let absent = json!({"type": "olm.package.required", "value": {"packageName": "absent", "versionRange": ">=1.0.0"}});
    let objects = vec![
        json!({"schema": "olm.package", "name": "sigma", "defaultChannel": "stable"}),
        fixture::channel(
            "sigma",
            "stable",
            json!([
                {"name": "sigma.v1.0.0"},
                {"name": "sigma.v1.1.0", "replaces": "sigma.v1.0.0"},
                {"name": "sigma.v0.9.0", "replaces": "sigma.v1.1.0"},
                {"name": "sigma.v1.2.0", "replaces": "sigma.v0.9.0"},
                {"name": "sigma.v1.3.0", "replaces": "sigma.v1.2.0"},
            ]),
        ),
        fixture::channel(
            "sigma",
            "fast",
            json!([{"name": "sigma.v1.3.0"}, {"name": "sigma.v2.0.0", "replaces": "sigma.v1.3.0"}]),
        ),
        bundle("1.0.0", vec![]),
        bundle("1.1.0", vec![]),
        bundle("0.9.0", vec![]),
        bundle("1.2.0", vec![]),
        bundle("1.3.0", vec![]),
        bundle("2.0.0", vec![absent]),
        json!({"schema": "olm.deprecations", "package": "sigma", "entries": [
            {"reference": {"schema": "olm.package"}, "message": "sigma moves to sigma-ng"},
            {"reference": {"schema": "olm.channel", "name": "fast"}, "message": "fast is frozen"},
            {"reference": {"schema": "olm.channel", "name": "stable"}, "message": "stable moves to sigma-ng"},
            {"reference": {"schema": "olm.bundle", "name": "sigma.v1.0.0"}, "message": "1.0.0 leaks"},
            {"reference": {"schema": "olm.bundle", "name": "sigma.v0.9.0"}, "message": "0.9.0 is a hotfix"},
        ]}),
    ];
    vec![("sigma/catalog.json".into(), fixture::json_stream(&objects))]
}

fn sigma_image(version: &str) -> String {
    format!("example.com/sigma/bundle@sha256:{}", sha256_hex(version.as_bytes()))
}

const SIGMA_INDEX: &str = "example.com/ns/sigma-index:v1";

/// What `airlift catalog filter --json` did with sigma and one operators entry.
struct Filtered {
    code: Option<i32>,
    doc: Value,
    stderr: String,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Filtered {
    /// The kept bundle names of the JSON document.
    fn kept(&self) -> BTreeSet<String> {
        let bundles = self.doc["bundles"].as_array().unwrap_or_else(|| panic!("no bundles: {}", self.doc));
        bundles.iter().map(|b| b["name"].as_str().unwrap().to_string()).collect()
    }

    fn notes(&self) -> Vec<String> {
        let notes = self.doc["notes"].as_array().unwrap_or_else(|| panic!("no notes: {}", self.doc));
        notes.iter().map(|n| n.as_str().unwrap().to_string()).collect()
    }

    /// Exit 2 (bad input), the JSON document saying so, and stderr naming each of `needles`.
    fn refused(&self, needles: &[&str]) {
        assert_eq!(self.code, Some(2), "{}", self.stderr);
        assert_eq!(self.doc["exit_code"], 2, "{}", self.doc);
        assert!(!self.out.exists(), "nothing is written when the filter is refused");
        for n in needles {
            assert!(self.stderr.contains(n), "the error does not name {n}: {}", self.stderr);
        }
    }
}

/// `airlift catalog filter --json` of sigma with `entry` in an image set of `api`
/// (v1alpha2, v2alpha1), writing the kept config into OUT.
fn filter_sigma(api: &str, entry: &str) -> Filtered {
    let tmp = common::tempdir();
    let dir = tmp.path().join("configs");
    fixture::write_tree(&dir, &sigma());
    let config = imageset_of(api, tmp.path(), SIGMA_INDEX, entry);
    let out = tmp.path().join("out");
    let o = airlift()
        .args(["catalog", "filter", "--json"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let doc = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("one JSON document: {e}\n{stderr}"));
    Filtered { code: o.status.code(), doc, stderr, out, _tmp: tmp }
}

fn sigma_names(versions: &[&str]) -> BTreeSet<String> {
    versions.iter().map(|v| format!("sigma.v{v}")).collect()
}

#[test]
fn channels_that_leave_out_the_default_channel_need_default_channel() {
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          channels:\n            - name: fast\n",
    );
    // Only `fast` is kept; sigma's default `stable` is not, and no defaultChannel is given.
    f.refused(&["sigma", "stable", "defaultChannel"]);

    // The same with defaultChannel naming the kept channel: fast's head alone.
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          defaultChannel: fast\n          channels:\n            - name: fast\n",
    );
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert_eq!(f.kept(), sigma_names(&["2.0.0"]));
}

#[test]
fn a_default_channel_that_is_not_kept_is_refused() {
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          defaultChannel: stable\n          channels:\n            - name: fast\n",
    );
    f.refused(&["sigma", "defaultChannel", "stable"]);
}

#[test]
fn a_package_range_with_a_channel_range_is_refused_naming_both() {
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          minVersion: 1.0.0\n          channels:\n\
         \x20           - name: stable\n              maxVersion: 1.2.0\n",
    );
    f.refused(&["imageset.yaml", "packages[0]", "sigma", "stable"]);
}

#[test]
fn full_with_a_range_is_refused_naming_the_package_entry() {
    let f = filter_sigma(
        "v2alpha1",
        "      full: true\n      packages:\n        - name: sigma\n          maxVersion: 1.2.0\n",
    );
    f.refused(&["imageset.yaml", "packages[0]", "full"]);
    let f = filter_sigma(
        "v2alpha1",
        "      full: true\n      packages:\n        - name: sigma\n          channels:\n\
         \x20           - name: fast\n              minVersion: 2.0.0\n",
    );
    f.refused(&["imageset.yaml", "packages[0]", "full"]);
}

#[test]
fn an_unknown_channel_is_refused_naming_it_and_its_package() {
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          channels:\n            - name: stable\n            - name: nightly\n",
    );
    f.refused(&["sigma", "nightly"]);
}

#[test]
fn an_out_of_range_bundle_that_bridges_the_chain_is_kept_with_a_warning() {
    let f = filter_sigma(
        "v2alpha1",
        "      packages:\n        - name: sigma\n          channels:\n            - name: stable\n\
         \x20             minVersion: 1.1.0\n",
    );
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    // stable from its head: 1.3.0 and 1.2.0 (in), 0.9.0 (below 1.1.0, but 1.1.0 lies
    // beyond it on the chain: kept as a bridge), 1.1.0 (in), 1.0.0 (below, nothing in range
    // beyond it: out). Nothing of `fast`; 2.0.0's missing dependency is not looked at.
    assert_eq!(f.kept(), sigma_names(&["1.3.0", "1.2.0", "0.9.0", "1.1.0"]));
    let warning = f.stderr.lines().find(|l| l.contains("sigma.v0.9.0")).unwrap_or_else(|| panic!("{}", f.stderr));
    assert!(warning.contains("warning") && warning.contains("stable") && warning.contains("bridge"), "{warning}");
    assert!(!f.stderr.contains("sigma.v1.0.0"), "{}", f.stderr);

    // The rendered config: one channel, its kept entries as published, and of the
    // deprecations those of what is kept: the package, channel stable and bundle 0.9.0
    // (not channel fast, not bundle 1.0.0).
    let objects = fixture::read_json_tree(&f.out);
    let files: BTreeSet<&str> = objects.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, BTreeSet::from(["sigma/catalog.json"]));
    let of = |schema: &str| objects.iter().map(|(_, o)| o).filter(|o| o["schema"] == schema).collect::<Vec<_>>();
    let channels = of("olm.channel");
    assert_eq!(channels.len(), 1, "{channels:?}");
    let mut entries = channels[0]["entries"].as_array().unwrap().clone();
    entries.sort_by_key(|e| e["name"].to_string());
    assert_eq!(
        Value::Array(entries),
        json!([{"name": "sigma.v0.9.0", "replaces": "sigma.v1.1.0"}, {"name": "sigma.v1.1.0", "replaces": "sigma.v1.0.0"},
               {"name": "sigma.v1.2.0", "replaces": "sigma.v0.9.0"}, {"name": "sigma.v1.3.0", "replaces": "sigma.v1.2.0"}])
    );
    let bundles: BTreeSet<String> = of("olm.bundle").iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(bundles, f.kept());
    let package = of("olm.package");
    assert_eq!(package.len(), 1);
    assert_eq!(package[0]["defaultChannel"], "stable");
    let deprecations = of("olm.deprecations");
    assert_eq!(deprecations.len(), 1, "{deprecations:?}");
    let references: Vec<&Value> =
        deprecations[0]["entries"].as_array().unwrap().iter().map(|e| &e["reference"]).collect();
    assert_eq!(
        references,
        [
            &json!({"schema": "olm.package"}),
            &json!({"schema": "olm.channel", "name": "stable"}),
            &json!({"schema": "olm.bundle", "name": "sigma.v0.9.0"})
        ],
        "{deprecations:?}"
    );
}

#[test]
fn catalog_filter_json_shows_the_kept_bundles_images_and_notes() {
    let f = filter_sigma("v2alpha1", "      packages:\n        - name: sigma\n          minVersion: 1.1.0\n");
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    let d = &f.doc;
    assert_eq!(d["status"], "ok", "{d}");
    assert_eq!(d["exit_code"], 0, "{d}");
    assert_eq!(d["catalog"], format!("docker://{SIGMA_INDEX}"), "{d}");
    assert_eq!(
        d["filter"],
        json!({"catalog": format!("docker://{SIGMA_INDEX}"), "packages": [{"name": "sigma", "minVersion": "1.1.0"}]}),
        "the filter as written"
    );
    // The package range applies to both channels. stable: 1.3.0, 1.2.0, 0.9.0 (a bridge),
    // 1.1.0, as in the test above; fast: 2.0.0 and 1.3.0, both in range.
    let want = ["1.1.0", "0.9.0", "1.2.0", "1.3.0", "2.0.0"];
    assert_eq!(f.kept(), sigma_names(&want));
    for b in d["bundles"].as_array().unwrap() {
        let version = b["name"].as_str().unwrap().trim_start_matches("sigma.v");
        assert_eq!(
            b,
            &json!({"package": "sigma", "name": format!("sigma.v{version}"), "version": version,
                              "image": sigma_image(version)})
        );
    }
    // Only bundle images: sigma names no related images.
    let images: BTreeSet<&str> = d["images"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    let want_images: Vec<String> = want.iter().map(|v| sigma_image(v)).collect();
    assert_eq!(images, want_images.iter().map(String::as_str).collect());
    // Two notes: the bridge, and 2.0.0's dependency on a package the catalog lacks.
    let notes = f.notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("sigma.v0.9.0") && n.contains("stable") && n.contains("bridge")),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("sigma.v2.0.0") && n.contains("absent")), "{notes:?}");
    assert_eq!(d["out"], f.out.display().to_string(), "{d}");
}

#[test]
fn v1alpha2_spellings_select_what_their_v2alpha1_equivalents_do() {
    // v1alpha2's minBundle names the minimum by bundle, its targetName the last path
    // component of the target: the same as minVersion 1.1.0 and targetCatalog ns/sigma-mirror.
    let old = filter_sigma(
        "v1alpha2",
        "      targetName: sigma-mirror\n      packages:\n        - name: sigma\n          channels:\n\
         \x20           - name: stable\n              minBundle: sigma.v1.1.0\n",
    );
    let new = filter_sigma(
        "v2alpha1",
        "      targetCatalog: ns/sigma-mirror\n      packages:\n        - name: sigma\n          channels:\n\
         \x20           - name: stable\n              minVersion: 1.1.0\n",
    );
    assert_eq!(old.code, Some(0), "{}", old.stderr);
    assert_eq!(new.code, Some(0), "{}", new.stderr);
    // As in the bridge test: 1.3.0, 1.2.0, 0.9.0 (bridge), 1.1.0.
    assert_eq!(new.kept(), sigma_names(&["1.3.0", "1.2.0", "0.9.0", "1.1.0"]));
    assert_eq!(old.doc["bundles"], new.doc["bundles"]);
    assert_eq!(old.doc["images"], new.doc["images"]);
    assert_eq!(old.notes(), new.notes());
    assert_eq!(old.doc["filter"]["targetCatalog"], "ns/sigma-mirror", "{}", old.doc);
    assert_eq!(old.doc["filter"]["targetCatalog"], new.doc["filter"]["targetCatalog"]);
    assert!(old.stderr.contains("targetName") && old.stderr.contains("deprecated"), "{}", old.stderr);
    assert_eq!(fixture::read_json_tree(&old.out), fixture::read_json_tree(&new.out), "the rendered configs");
}

#[test]
fn pack_refuses_channels_that_leave_out_the_default_channel_naming_the_package() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    // alpha's default channel is stable; only fast is asked for, without defaultChannel.
    let entry = "      packages:\n        - name: alpha\n          channels:\n            - name: fast\n";
    let config = imageset(tmp.path(), &p.catalog.reference(), entry);
    let err = refused(&pack_config(&p, tmp.path(), &config), tmp.path());
    for n in ["alpha", "stable", "defaultChannel", "catalog/operator-index"] {
        assert!(err.contains(n), "the error does not name {n}: {err}");
    }
}

#[test]
fn pack_of_v1alpha2_spellings_rebuilds_the_catalog_of_their_v2alpha1_equivalent() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let range = "      packages:\n        - name: alpha\n          channels:\n            - name: stable\n";
    let old = format!(
        "      targetName: mirrored-index\n{range}              minBundle: alpha.v1.1.0\n\
                       \x20             maxVersion: 1.2.0\n"
    );
    let old = pack_catalog_of("v1alpha2", &p, &p.catalog.reference(), &tmp.path().join("old"), &old).catalog;
    let new = format!(
        "      targetCatalog: catalog/mirrored-index\n{range}              minVersion: 1.1.0\n\
                       \x20             maxVersion: 1.2.0\n"
    );
    let new = pack_catalog(&p, &tmp.path().join("new"), &new);
    // As the channel range test: alpha/stable's 1.2.0 and 1.1.0 on the chain, 1.1.1 skipped
    // by 1.2.0; minBundle alpha.v1.1.0 is the minimum 1.1.0.
    assert_kept(&p, &new, &["alpha.v1.1.0", "alpha.v1.1.1", "alpha.v1.2.0"], &new.rebuilt());
    for field in ["bundles", "images", "rebuilt", "target", "digest"] {
        assert_eq!(old[field], new.catalog[field], "{field}");
    }
    // targetName replaces the last component of the catalog's repository.
    assert_eq!(old["target"], format!("{}/catalog/mirrored-index:v4.16", p.dist.host()));
}

#[test]
fn the_filter_shows_as_written_in_list_and_verify_json() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let entry = "      targetCatalog: mirrored/gamma-only\n      targetTag: v1\n      skipDependencies: true\n\
                 \x20     packages:\n        - name: gamma\n          defaultChannel: candidate\n\
                 \x20         channels:\n            - name: candidate\n              minVersion: 1.5.0\n";
    let packed = pack_catalog(&p, tmp.path(), entry);
    // gamma/candidate from its head: 2.0.0 and 1.5.0, both >= 1.5.0; gamma/stable (the
    // catalog's default) is left out, so defaultChannel names candidate. No dependencies.
    assert_kept(&p, &packed, &["gamma.v1.5.0", "gamma.v2.0.0"], &packed.rebuilt());
    let filter = json!({
        "catalog": format!("docker://{}", p.catalog.reference()),
        "packages": [{"name": "gamma", "defaultChannel": "candidate",
                      "channels": [{"name": "candidate", "minVersion": "1.5.0"}]}],
        "skipDependencies": true,
        "targetCatalog": "mirrored/gamma-only",
        "targetTag": "v1",
    });
    let c = &packed.catalog;
    assert_eq!(c["filter"], filter, "list --json");
    assert_eq!(c["source"], filter["catalog"], "{c}");
    assert_eq!(c["digest"], p.catalog.digest, "{c}");
    assert_eq!(c["target"], format!("{}/mirrored/gamma-only:v1", p.dist.host()), "{c}");
    packed.assert_verify_agrees(tmp.path());
    // The gate's human report shows the filter too.
    let o = airlift()
        .arg("verify")
        .arg(&packed.bundle)
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stderr));
    let line = report.lines().find(|l| l.trim_start().starts_with("filter ")).unwrap_or_else(|| panic!("{report}"));
    for n in ["gamma", "candidate", "1.5.0", "mirrored/gamma-only", "skipDependencies"] {
        assert!(line.contains(n), "the filter line does not show {n}: {line}");
    }
}

/// A `targetCatalogSourceTemplate` with fields of its own, next to the image set.
const TEMPLATE: &str = r#"apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata:
  name: from-the-template
  namespace: openshift-marketplace
  labels:
    team: storage
spec:
  displayName: Storage operators
  sourceType: configmap
  image: quay.io/example/placeholder:latest
  grpcPodConfig:
    memoryTarget: 30Mi
    extractContent:
      cacheDir: /tmp/cache
      catalogDir: /configs
"#;

/// beta/stable with a CatalogSource template, packed and pushed with `unpack --to` into the
/// fixture's own registry under another prefix (`mirror`).
#[test]
fn unpack_to_another_registry_mirrors_the_filtered_catalog_and_its_images() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let dir = tmp.path().join("pack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("catalogsource.yaml"), TEMPLATE).unwrap();
    let entry = "      targetCatalogSourceTemplate: catalogsource.yaml\n      packages:\n        - name: beta\n\
                 \x20         channels:\n            - name: stable\n";
    let packed = pack_catalog(&p, &dir, entry);
    // The head of beta/stable, beta.v0.3.0, and the provider of the Widget GVK it requires:
    // the newest on delta's default channel, delta.v3.1.0.
    let want = ["beta.v0.3.0", "delta.v3.1.0"];
    let rebuilt = packed.rebuilt();
    assert_kept(&p, &packed, &want, &rebuilt);

    let work = tmp.path().join("to");
    let doc = unpack_to(&dir, &packed.bundle, &p.dist, "mirror", &work, &[]);
    let results = work.join("results");
    assert_eq!(doc["results"]["dir"].as_str().map(PathBuf::from), Some(results.clone()), "{doc}");

    // The catalog at its target under the prefix, tag and digest.
    let host = p.dist.host();
    assert_eq!(p.dist.digest("mirror/catalog/operator-index:v4.16"), rebuilt);
    assert_eq!(p.dist.digest(&format!("mirror/catalog/operator-index@{rebuilt}")), rebuilt);
    // The mirror set sends each operator repository there, and nothing else of theirs.
    let idms = digest_mirrors(&yaml(&results.join("imagedigestmirrorset.yaml")));
    for repo in ["beta-bundle", "beta-operator", "delta-bundle", "delta-operator"] {
        let to = format!("{host}/mirror/operators/{repo}");
        assert!(idms.contains(&(format!("{host}/operators/{repo}"), vec![to])), "{repo}: {idms:?}");
    }
    let digest_at = |reference: &str| {
        let name =
            reference.strip_prefix(&format!("{host}/")).unwrap_or_else(|| panic!("{reference} is not at {host}"));
        p.dist.digest(name)
    };
    let image = format!("{host}/mirror/catalog/operator-index@{rebuilt}");
    let cs = assert_cluster_files(&p, &digest_at, &doc, &image, &want);
    // The template's own fields are kept; name, sourceType and image are airlift's.
    assert_eq!(cs["metadata"]["labels"]["team"].as_str(), Some("storage"), "{cs:?}");
    assert_eq!(cs["spec"]["displayName"].as_str(), Some("Storage operators"), "{cs:?}");
    assert_eq!(cs["spec"]["grpcPodConfig"]["memoryTarget"].as_str(), Some("30Mi"), "{cs:?}");
    assert_eq!(cs["spec"]["grpcPodConfig"]["extractContent"]["catalogDir"].as_str(), Some("/configs"), "{cs:?}");
    assert_eq!(cs["metadata"]["name"].as_str(), Some("operator-index-v4-16"), "{cs:?}");
}

/// Pack the fixture catalog with a `targetCatalogSourceTemplate` of `text` (none when
/// `None`): refused (exit 2) naming the template file.
fn assert_template_refused(p: &Published, text: Option<&str>) {
    let tmp = common::tempdir();
    if let Some(text) = text {
        std::fs::write(tmp.path().join("not-a-catalogsource.yaml"), text).unwrap();
    }
    let config =
        imageset(tmp.path(), &p.catalog.reference(), "      targetCatalogSourceTemplate: not-a-catalogsource.yaml\n");
    let err = refused(&pack_config(p, tmp.path(), &config), tmp.path());
    assert!(err.contains("not-a-catalogsource.yaml"), "{err}");
}

#[test]
fn a_catalog_source_template_that_is_missing_or_no_yaml_mapping_is_refused_naming_the_file() {
    let Some(p) = published() else { return };
    assert_template_refused(&p, Some("- kind: CatalogSource\n- kind: CatalogSource\n"));
    assert_template_refused(&p, Some("kind: [CatalogSource\n"));
    assert_template_refused(&p, None);
}

/// A small catalog `multi` (heads of its one package `multi`, whose bundle image is
/// alpha.v1.0.0's and whose operator image is testdata/layout's two-platform `multi`),
/// packed with `platforms: [linux/arm64]`.
#[test]
fn per_catalog_platforms_keep_one_platform_of_the_catalog_and_of_its_images() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let host = p.dist.host();
    let multi =
        p.dist.push(&format!("oci:{}:multi", common::testdata("layout").display()), "operators/multi-operator:v1");
    let operator = format!("{host}/operators/multi-operator@{multi}");
    let bundle_image = p.catalog.bundles["alpha.v1.0.0"].image.clone();
    let (catalog_ref, original) = publish_one_bundle(&p, &tmp.path().join("layout"), "multi", &bundle_image, &operator);
    let dir = tmp.path().join("pack");
    let entry = "      platforms:\n        - os: linux\n          architecture: arm64\n";
    let packed = pack_catalog_of("v2alpha1", &p, &catalog_ref, &dir, entry);
    let catalog = &packed.catalog;
    assert_eq!(catalog["filter"]["platforms"], json!(["linux/arm64"]), "{catalog}");
    assert_eq!(catalog["digest"], original, "{catalog}");
    let rebuilt = packed.rebuilt();
    assert_ne!(rebuilt, original);
    let platforms: Vec<(String, Value)> = packed.list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["digest"].as_str().unwrap().to_string(), i["platforms"].clone()))
        .collect();
    // The rebuilt catalog for arm64 alone; of the operator image its arm64 (v8) manifest.
    assert!(platforms.contains(&(rebuilt.clone(), json!(["linux/arm64"]))), "{platforms:?}");
    assert!(platforms.contains(&(multi.clone(), json!(["linux/arm64/v8"]))), "{platforms:?}");
    let digests: BTreeSet<&str> = platforms.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(digests, BTreeSet::from([rebuilt.as_str(), multi.as_str(), bundle_image.split_once('@').unwrap().1]));

    // The rebuilt index itself lists one platform.
    let out = tmp.path().join("layout-out");
    airlift()
        .arg("unpack")
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .arg("--layout")
        .arg(&out)
        .assert()
        .success();
    let index = blob_json(&out, &rebuilt);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["platform"], json!({"architecture": "arm64", "os": "linux"}), "{index}");
    let manifest = blob_json(&out, manifests[0]["digest"].as_str().unwrap());
    let config = blob_json(&out, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["config"]["Cmd"], json!(["serve", "/configs"]));
    // The operator image's arm64 manifest is there, its amd64 one is not.
    let children = blob_json(&out, &multi);
    for child in children["manifests"].as_array().unwrap() {
        let here = blob_path(&out, child["digest"].as_str().unwrap()).exists();
        assert_eq!(here, child["platform"]["architecture"] == "arm64", "{child}");
    }
}

#[test]
fn a_catalog_source_template_that_is_not_a_catalog_source_is_refused_naming_the_file() {
    let Some(p) = published() else { return };
    assert_template_refused(&p, Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n"));
}

#[test]
fn a_catalog_source_template_whose_spec_is_no_mapping_is_refused_at_pack_naming_the_file() {
    let Some(p) = published() else { return };
    assert_template_refused(&p, Some("apiVersion: operators.coreos.com/v1alpha1\nkind: CatalogSource\nspec: grpc\n"));
}

/// oc-mirror's `oci://DIR` catalogs: the fixture's catalog read from the OCI layout it was
/// pushed from (beta/stable's head), copied into the cache, rebuilt and mirrored as
/// targetCatalog:targetTag into a fresh root, where the CatalogSource names it by digest.
#[test]
fn a_catalog_in_an_oci_layout_is_filtered_rebuilt_and_mirrored() {
    let Some(p) = published() else { return };
    let tmp = common::tempdir();
    let layout = p.catalog.layout.display().to_string();
    let entry = "      targetCatalog: mirrored/from-disk\n      targetTag: v1\n      packages:\n        - name: beta\n\
                 \x20         channels:\n            - name: stable\n";
    let packed = pack_catalog_of("v2alpha1", &p, &format!("oci://{layout}:catalog"), tmp.path(), entry);
    // beta/stable's head, beta.v0.3.0, and the newest bundle providing the Widget it
    // requires on delta's default channel, delta.v3.1.0.
    let want = ["beta.v0.3.0", "delta.v3.1.0"];
    let rebuilt = packed.rebuilt();
    assert_kept(&p, &packed, &want, &rebuilt);
    assert_eq!(packed.catalog["source"], format!("oci:{layout}:catalog"), "{}", packed.catalog);
    assert_eq!(packed.catalog["target"], "mirrored/from-disk:v1", "{}", packed.catalog);
    let original = std::fs::read(p.catalog.layout.join("index.json")).unwrap();
    let original: Value = serde_json::from_slice(&original).unwrap();
    assert_eq!(packed.catalog["digest"], original["manifests"][0]["digest"], "the layout's catalog is pinned");

    let mut reg = Registry::install();
    let doc = unpack_root(tmp.path(), &packed.bundle, &reg.root, &[]);
    reg.serve(&[]);
    let digest_at = |reference: &str| {
        let mut cmd = reg.skopeo("inspect");
        cmd.arg("--raw").args(reg.skopeo_args()).arg(format!("docker://{reference}"));
        format!("sha256:{}", sha256_hex(run_ok(&mut cmd).as_bytes()))
    };
    let mirrored = format!("localhost:{}/mirrored/from-disk", reg.port);
    assert_eq!(digest_at(&format!("{mirrored}:v1")), rebuilt, "the target tag");
    assert_cluster_files(&p, &digest_at, &doc, &format!("{mirrored}@{rebuilt}"), &want);
}
