//! Operator catalog fixtures built in the test: a file-based catalog (FBC) of five
//! packages laid out so every filter rule has one clear answer, its bundle and related
//! images (small real images pushed with skopeo), and the catalog image itself — an OCI
//! index of linux/amd64 and linux/arm64 whose layers are gzip tars (a base layer, the
//! configs layer, and an upper layer that whites out a package and a file), written as
//! an OCI layout and pushed with `skopeo copy --all` into Debian's docker-registry.
//!
//! The graph (channel heads marked *):
//! - `alpha` (JSON, default `stable`): `stable` 1.0.0 ← 1.1.0 ← 1.2.0 (skips 1.1.1)
//!   ← 2.0.0* (skipRange `>=1.0.0 <2.0.0`); `fast` 2.0.0 ← 2.1.0*; 2.1.0 requires
//!   package `gamma` in `>=1.0.0 <2.0.0`. A file `zz-stale.json` (channel `legacy`,
//!   bundle alpha.v0.0.1) is whited out by the upper layer.
//! - `beta` (YAML, default `stable`): `stable` 0.1.0 ← 0.2.0 ← 0.3.0*; `old` 0.1.0*;
//!   deprecations for channel `old` and bundle beta.v0.1.0; 0.3.0 requires the GVK
//!   `delta.example.com/v1 Widget`.
//! - `gamma` (JSON, default `stable`): `stable` 1.0.0 ← 1.5.0*; `candidate` 1.5.0 ← 2.0.0*.
//! - `delta` (YAML, default `stable`): `stable` 3.0.0 ← 3.1.0*; both provide the Widget GVK.
//! - `stale` (JSON): whited out as a whole directory by the upper layer.
//!
//! `.indexignore` hides `notes.json`, which is not JSON at all.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::distribution::Distribution;
use super::{make_layout, sha256_hex};

/// The config label naming the catalog's config directory.
pub const CONFIGS_LABEL: &str = "operators.operatorframework.io.index.configs.v1";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const PLATFORMS: [&str; 2] = ["amd64", "arm64"];

/// A file of a layer: its path in the image and its bytes.
pub type File = (String, Vec<u8>);

/// One bundle of the fixture and the images it references (both `HOST/REPO@DIGEST`).
#[derive(Debug, Clone)]
pub struct FixtureBundle {
    pub package: String,
    pub version: String,
    pub image: String,
    pub related: String,
}

/// The published fixture catalog.
pub struct Catalog {
    /// Every bundle the FBC mentions, whited-out ones included, by name.
    pub bundles: BTreeMap<String, FixtureBundle>,
    /// `HOST/catalog/operator-index` and its tag.
    pub repository: String,
    pub tag: String,
    /// The digest of the published index.
    pub digest: String,
    /// The OCI layout the catalog was pushed from.
    pub layout: PathBuf,
}

impl Catalog {
    /// `HOST/REPO:TAG`, as an image set file names it.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The bundle and related images of `names`, sorted.
    pub fn images_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut images: Vec<String> = names
            .into_iter()
            .flat_map(|n| {
                let b = self.bundles.get(n).unwrap_or_else(|| panic!("{n} is not a fixture bundle"));
                [b.image.clone(), b.related.clone()]
            })
            .collect();
        images.sort();
        images
    }
}

/// Every bundle of the fixture, as (package, version). The first 14 are visible; the last
/// two are whited out by the catalog image's upper layer.
pub const BUNDLES: [(&str, &str); 16] = [
    ("alpha", "1.0.0"),
    ("alpha", "1.1.0"),
    ("alpha", "1.1.1"),
    ("alpha", "1.2.0"),
    ("alpha", "2.0.0"),
    ("alpha", "2.1.0"),
    ("beta", "0.1.0"),
    ("beta", "0.2.0"),
    ("beta", "0.3.0"),
    ("gamma", "1.0.0"),
    ("gamma", "1.5.0"),
    ("gamma", "2.0.0"),
    ("delta", "3.0.0"),
    ("delta", "3.1.0"),
    ("alpha", "0.0.1"),
    ("stale", "1.0.0"),
];

/// Publish the fixture in `dist`: bundle images in `operators/PACKAGE-bundle`, related
/// images in `operators/PACKAGE-operator`, the catalog as `catalog/operator-index:v4.16`.
pub fn publish(dist: &Distribution, dir: &Path) -> Catalog {
    let images = dir.join("images");
    let sizes: Vec<[usize; 1]> = (0..BUNDLES.len() * 2).map(|i| [400 + i * 10]).collect();
    let sizes: Vec<&[usize]> = sizes.iter().map(|s| &s[..]).collect();
    make_layout(&images, &sizes, false);
    let host = dist.host();
    let pushes: Vec<(String, String)> = BUNDLES
        .iter()
        .enumerate()
        .flat_map(|(i, (package, version))| {
            [
                (format!("img-{}", 2 * i), format!("operators/{package}-bundle:v{version}")),
                (format!("img-{}", 2 * i + 1), format!("operators/{package}-operator:v{version}")),
            ]
        })
        .collect();
    let digests = push_all(dist, &images, &pushes);
    let by_digest = |i: usize| format!("{host}/{}@{}", pushes[i].1.split(':').next().unwrap(), digests[i]);
    let bundles: BTreeMap<String, FixtureBundle> = BUNDLES
        .iter()
        .enumerate()
        .map(|(i, (package, version))| {
            let b = FixtureBundle {
                package: package.to_string(),
                version: version.to_string(),
                image: by_digest(2 * i),
                related: by_digest(2 * i + 1),
            };
            (format!("{package}.v{version}"), b)
        })
        .collect();
    let (configs, whiteouts) = fbc(&bundles);
    let layout = catalog_layout(&dir.join("catalog"), Some("/configs"), &[configs, whiteouts]);
    let tag = "catalog/operator-index:v4.16";
    let digest = dist.push(&format!("oci:{}:catalog", layout.display()), tag);
    Catalog { bundles, repository: format!("{host}/catalog/operator-index"), tag: "v4.16".into(), digest, layout }
}

/// Push `(layout ref, name)` pairs from the layout `dir`, four skopeo processes at a time;
/// returns the pushed digests in the same order.
fn push_all(dist: &Distribution, dir: &Path, pushes: &[(String, String)]) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let digests = std::sync::Mutex::new(vec![String::new(); pushes.len()]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((reference, name)) = pushes.get(i) else { return };
                let digest = dist.push(&format!("oci:{}:{reference}", dir.display()), name);
                digests.lock().unwrap()[i] = digest;
            });
        }
    });
    digests.into_inner().unwrap()
}

/// The configs layer and the whiteout layer of the fixture catalog.
fn fbc(bundles: &BTreeMap<String, FixtureBundle>) -> (Vec<File>, Vec<File>) {
    let b = |name: &str, extra: Vec<Value>| bundle_object(name, &bundles[name], extra);
    let widget = json!({"group": "delta.example.com", "version": "v1", "kind": "Widget"});
    let alpha_channels = [
        json!({"schema": "olm.package", "name": "alpha", "defaultChannel": "stable", "description": "Alpha operator"}),
        channel(
            "alpha",
            "stable",
            json!([
                {"name": "alpha.v1.0.0"},
                {"name": "alpha.v1.1.0", "replaces": "alpha.v1.0.0"},
                {"name": "alpha.v1.1.1"},
                {"name": "alpha.v1.2.0", "replaces": "alpha.v1.1.0", "skips": ["alpha.v1.1.1"]},
                {"name": "alpha.v2.0.0", "replaces": "alpha.v1.2.0", "skipRange": ">=1.0.0 <2.0.0"},
            ]),
        ),
        channel(
            "alpha",
            "fast",
            json!([{"name": "alpha.v2.0.0"}, {"name": "alpha.v2.1.0", "replaces": "alpha.v2.0.0"}]),
        ),
    ];
    let gamma_required =
        json!({"type": "olm.package.required", "value": {"packageName": "gamma", "versionRange": ">=1.0.0 <2.0.0"}});
    let alpha_bundles = ["1.0.0", "1.1.0", "1.1.1", "1.2.0", "2.0.0"]
        .iter()
        .map(|v| b(&format!("alpha.v{v}"), vec![]))
        .chain([b("alpha.v2.1.0", vec![gamma_required])])
        .collect::<Vec<_>>();
    let alpha_stale = [channel("alpha", "legacy", json!([{"name": "alpha.v0.0.1"}])), b("alpha.v0.0.1", vec![])];
    let beta = [
        json!({"schema": "olm.package", "name": "beta", "defaultChannel": "stable"}),
        channel(
            "beta",
            "stable",
            json!([
                {"name": "beta.v0.1.0"},
                {"name": "beta.v0.2.0", "replaces": "beta.v0.1.0"},
                {"name": "beta.v0.3.0", "replaces": "beta.v0.2.0"},
            ]),
        ),
        channel("beta", "old", json!([{"name": "beta.v0.1.0"}])),
        b("beta.v0.1.0", vec![]),
        b("beta.v0.2.0", vec![]),
        b("beta.v0.3.0", vec![json!({"type": "olm.gvk.required", "value": widget})]),
        json!({"schema": "olm.deprecations", "package": "beta", "entries": [
            {"reference": {"schema": "olm.channel", "name": "old"}, "message": "channel old is no longer updated"},
            {"reference": {"schema": "olm.bundle", "name": "beta.v0.1.0"}, "message": "beta.v0.1.0 loses data"},
        ]}),
    ];
    let gamma = [
        json!({"schema": "olm.package", "name": "gamma", "defaultChannel": "stable"}),
        channel(
            "gamma",
            "stable",
            json!([{"name": "gamma.v1.0.0"}, {"name": "gamma.v1.5.0", "replaces": "gamma.v1.0.0"}]),
        ),
        channel(
            "gamma",
            "candidate",
            json!([{"name": "gamma.v1.5.0"}, {"name": "gamma.v2.0.0", "replaces": "gamma.v1.5.0"}]),
        ),
        b("gamma.v1.0.0", vec![]),
        b("gamma.v1.5.0", vec![]),
        b("gamma.v2.0.0", vec![]),
    ];
    let provides = json!({"type": "olm.gvk", "value": widget});
    let delta = [
        json!({"schema": "olm.package", "name": "delta", "defaultChannel": "stable"}),
        channel(
            "delta",
            "stable",
            json!([{"name": "delta.v3.0.0"}, {"name": "delta.v3.1.0", "replaces": "delta.v3.0.0"}]),
        ),
        b("delta.v3.0.0", vec![provides.clone()]),
        b("delta.v3.1.0", vec![provides]),
    ];
    let stale = [
        json!({"schema": "olm.package", "name": "stale", "defaultChannel": "stable"}),
        channel("stale", "stable", json!([{"name": "stale.v1.0.0"}])),
        b("stale.v1.0.0", vec![]),
    ];
    let configs = vec![
        ("configs/.indexignore".into(), b"# not part of the catalog\nnotes.json\n".to_vec()),
        ("configs/notes.json".into(), b"these are notes, not JSON {".to_vec()),
        ("configs/alpha/channels.json".into(), json_stream(&alpha_channels)),
        ("configs/alpha/bundles.json".into(), json_stream(&alpha_bundles)),
        ("configs/alpha/zz-stale.json".into(), json_stream(&alpha_stale)),
        ("configs/beta/catalog.yaml".into(), yaml_stream(&beta)),
        ("configs/gamma/catalog.json".into(), json_stream(&gamma)),
        ("configs/delta/catalog.yml".into(), yaml_stream(&delta)),
        ("configs/stale/catalog.json".into(), json_stream(&stale)),
    ];
    let whiteouts =
        vec![("configs/.wh.stale".into(), Vec::new()), ("configs/alpha/.wh.zz-stale.json".into(), Vec::new())];
    (configs, whiteouts)
}

pub fn channel(package: &str, name: &str, entries: Value) -> Value {
    json!({"schema": "olm.channel", "package": package, "name": name, "entries": entries})
}

/// An `olm.bundle` object with its version property, `extra` properties, and its
/// related images (the operator image and the bundle image itself, as opm renders them).
fn bundle_object(name: &str, b: &FixtureBundle, extra: Vec<Value>) -> Value {
    let mut properties =
        vec![json!({"type": "olm.package", "value": {"packageName": b.package, "version": b.version}})];
    properties.extend(extra);
    json!({
        "schema": "olm.bundle", "name": name, "package": b.package, "image": b.image,
        "properties": properties,
        "relatedImages": [{"name": "operator", "image": b.related}, {"name": "", "image": b.image}],
    })
}

/// Objects as a `*.json` catalog file holds them: concatenated, not an array.
pub fn json_stream(objects: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in objects {
        out.extend(serde_json::to_vec_pretty(o).unwrap());
        out.push(b'\n');
    }
    out
}

/// Objects as a multi-document YAML file.
pub fn yaml_stream(objects: &[Value]) -> Vec<u8> {
    objects.iter().map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap())).collect::<String>().into_bytes()
}

/// Every JSON object of the `*.json` files under `dir` (a stream of concatenated
/// objects each), with the file it came from relative to `dir`.
pub fn read_json_tree(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap().display().to_string();
        let bytes = std::fs::read(entry.path()).unwrap();
        for o in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
            out.push((rel.clone(), o.unwrap_or_else(|e| panic!("{rel}: {e}"))));
        }
    }
    out
}

/// A gzip tar of `files` (a path ending in `/` is a directory; parents are added), with
/// fixed metadata; returns the compressed bytes and the diff_id (digest of the tar).
pub fn gzip_tar(files: &[File]) -> (Vec<u8>, String) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, bytes) in files {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        for depth in 1..parts.len() {
            let d = format!("{}/", parts[..depth].join("/"));
            if dirs.insert(d.clone()) {
                append(&mut builder, &d, &[]);
            }
        }
        if !path.ends_with('/') || dirs.insert(path.clone()) {
            append(&mut builder, path, bytes);
        }
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), format!("sha256:{}", sha256_hex(&tar)))
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_ustar();
    let dir = path.ends_with('/');
    h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    builder.append_data(&mut h, path, bytes).unwrap();
}

/// An OCI layout at `dir` holding the image `catalog`: an index of a linux/amd64 and a
/// linux/arm64 image, each a base layer of its own then the shared `layers`, with the
/// configs `label` (none when `None`), `Entrypoint ["/bin/opm"]` and
/// `Cmd ["serve","/configs","--cache-dir=/tmp/cache"]`, as opm builds catalog images.
pub fn catalog_layout(dir: &Path, label: Option<&str>, layers: &[Vec<File>]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let shared: Vec<(Vec<u8>, String)> = layers.iter().map(|files| gzip_tar(files)).collect();
    let mut manifests = Vec::new();
    for arch in PLATFORMS {
        let base = gzip_tar(&[
            ("bin/opm".into(), format!("#!/bin/sh\necho opm for {arch}\n").into_bytes()),
            ("tmp/cache/cache.json".into(), br#"{"prebuilt":true}"#.to_vec()),
        ]);
        let all: Vec<&(Vec<u8>, String)> = std::iter::once(&base).chain(&shared).collect();
        let labels = label.map(|l| json!({CONFIGS_LABEL: l})).unwrap_or(json!({}));
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Labels": labels, "Entrypoint": ["/bin/opm"],
                       "Cmd": ["serve", "/configs", "--cache-dir=/tmp/cache"]},
            "rootfs": {"type": "layers", "diff_ids": all.iter().map(|(_, d)| d).collect::<Vec<_>>()},
            "history": all.iter().enumerate().map(|(i, _)| json!({"created_by": format!("layer {i}")})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let (config_digest, config_size) = put(&config);
        let layer_descs: Vec<Value> = all
            .iter()
            .map(|(gz, _)| {
                let (d, size) = put(gz);
                json!({"mediaType": OCI_LAYER, "digest": d, "size": size})
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layer_descs,
        }))
        .unwrap();
        let (d, size) = put(&manifest);
        manifests.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                              "platform": {"architecture": arch, "os": "linux"}}));
    }
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap();
    let (d, size) = put(&index);
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX, "digest": d, "size": size,
                     "annotations": {"org.opencontainers.image.ref.name": "catalog"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

/// Write `files` (paths relative to `dir`) under `dir`.
pub fn write_tree(dir: &Path, files: &[File]) {
    for (path, bytes) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
}
