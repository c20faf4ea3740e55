//! Catalog images built in a temp store: two platforms, an FBC in a lower layer, an upper
//! layer with a whiteout, an opaque directory and a new file; and hostile variants.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::oci::{DOCKER_LIST, OCI_INDEX, OCI_MANIFEST};

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A tar entry of a test layer.
enum E {
    Dir(&'static str),
    File(&'static str, &'static [u8]),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    /// A regular file whose header claims this size, followed by no data.
    Claims(&'static str, u64),
}

/// A tar of `entries`, names written raw (so `..` and absolute names can be made).
fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                (n, b"")
            }
            E::File(n, d) => (n, d),
            E::Symlink(n, t) | E::HardLink(n, t) => {
                let kind = if matches!(e, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                h.set_entry_type(kind);
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                (n, b"")
            }
            E::Claims(n, size) => {
                h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
                h.set_size(*size);
                h.set_mode(0o644);
                h.set_cksum();
                b.get_mut().extend_from_slice(h.as_bytes());
                b.get_mut().extend_from_slice(&[0u8; 512]);
                continue;
            }
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn put(store: &BlobStore, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    store.put_bytes(&d, bytes).unwrap();
    d
}

fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len() })
}

/// The layers of the standard catalog, bottom first.
fn catalog_layers() -> Vec<Vec<u8>> {
    let lower = tar(&[
        E::Dir("bin/"),
        E::File("bin/opm", b"#!opm"),
        E::Dir("configs/"),
        E::Dir("configs/foo/"),
        E::File("configs/foo/catalog.json", br#"{"schema":"olm.package","name":"foo"}"#),
        E::Dir("configs/bar/"),
        E::File("configs/bar/catalog.json", br#"{"schema":"olm.package","name":"bar"}"#),
        E::File("configs/baz/index.yaml", b"schema: olm.package\nname: baz\n"),
        E::File("configs/old/x.json", b"{}"),
        E::File("tmp/cache/cache.json", b"{}"),
    ]);
    let upper = tar(&[
        E::File("configs/.wh.bar", b""),
        E::File("configs/new/catalog.json", br#"{"schema":"olm.package","name":"new"}"#),
        E::File("configs/old/.wh..wh..opq", b""),
        E::File("configs/old/y.json", b"[]"),
        E::Symlink("etc/link", "/etc/passwd"),
    ]);
    vec![lower, upper]
}

/// What the standard catalog's config directory holds.
fn catalog_tree() -> BTreeMap<String, Option<Vec<u8>>> {
    [
        ("foo", None),
        ("foo/catalog.json", Some(&br#"{"schema":"olm.package","name":"foo"}"#[..])),
        ("baz", None),
        ("baz/index.yaml", Some(b"schema: olm.package\nname: baz\n")),
        ("new", None),
        ("new/catalog.json", Some(br#"{"schema":"olm.package","name":"new"}"#)),
        ("old", None),
        ("old/y.json", Some(b"[]")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
    .collect()
}

/// Every file and directory under `dir` (directories as `None`), by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            assert!(!e.path_is_symlink(), "{rel} is a symlink");
            (rel, e.file_type().is_file().then(|| std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

/// An image config for `arch` over `layers` (uncompressed tars) with `labels`.
fn config(arch: &str, layers: &[Vec<u8>], labels: Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let history: Vec<Value> =
        layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "ADD"})).collect();
    serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/bin/opm"],
            "Cmd": ["serve", "/configs", "--cache-dir=/tmp/cache"],
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    }))
    .unwrap()
}

fn labels() -> Value {
    json!({ CONFIGS_LABEL: "/configs", "vendor": "test" })
}

/// A platform manifest of `kind` over `layers`, its config and layers put in `store`.
fn manifest(store: &BlobStore, kind: &str, config_bytes: &[u8], layers: &[Vec<u8>]) -> Vec<u8> {
    let layer_type = if kind == DOCKER_MANIFEST { DOCKER_LAYER } else { OCI_LAYER };
    let config_type = if kind == DOCKER_MANIFEST {
        "application/vnd.docker.container.image.v1+json"
    } else {
        "application/vnd.oci.image.config.v1+json"
    };
    put(store, config_bytes);
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let gz = gzip(l);
            put(store, &gz);
            desc(layer_type, &gz)
        })
        .collect();
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": kind,
        "config": desc(config_type, config_bytes),
        "layers": layers,
        "annotations": { "org.opencontainers.image.title": "catalog" },
    }))
    .unwrap();
    put(store, &m);
    m
}

/// The standard two-platform catalog (an OCI index of amd64 and arm64) in `store`.
fn catalog(store: &BlobStore) -> Digest {
    catalog_with(store, OCI_INDEX, &catalog_layers(), [labels(), labels()])
}

/// A two-platform catalog over `layers`: an index of `kind` (OCI, or a Docker manifest
/// list of Docker manifests) whose configs have `labels`.
fn catalog_with(store: &BlobStore, kind: &str, layers: &[Vec<u8>], labels: [Value; 2]) -> Digest {
    let [amd, arm] = labels;
    let child = if kind == DOCKER_LIST { DOCKER_MANIFEST } else { OCI_MANIFEST };
    let amd64 = manifest(store, child, &config("amd64", layers, amd), layers);
    let arm64 = manifest(store, child, &config("arm64", layers, arm), layers);
    let attestation = b"an attestation manifest, never read".to_vec();
    let mut att = desc(child, &attestation);
    att["annotations"] = json!({ "vnd.docker.reference.type": "attestation-manifest" });
    att["platform"] = json!({ "os": "unknown", "architecture": "unknown" });
    let platform = |arch: &str, m: &[u8]| {
        let mut d = desc(child, m);
        d["platform"] = json!({ "os": "linux", "architecture": arch });
        d
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": kind,
        "manifests": [platform("amd64", &amd64), platform("arm64", &arm64), att],
        "annotations": { "org.opencontainers.image.ref.name": "v4.16" },
    }))
    .unwrap();
    put(store, &index)
}

fn read_doc(store: &BlobStore, digest: &Digest) -> Value {
    serde_json::from_slice(&std::fs::read(store.path(digest)).unwrap()).unwrap()
}

fn digest_at(doc: &Value, pointer: &str) -> Digest {
    doc.pointer(pointer).and_then(Value::as_str).unwrap().parse().unwrap()
}

/// A package name longer than a tar header's name field.
const LONG: &str =
    "a-package-whose-name-is-longer-than-the-hundred-bytes-of-a-tar-header-name-field-so-it-takes-an-extension";

/// The filtered config a rebuild is given.
fn filtered(dir: &Path) {
    for package in ["foo", "a-b", LONG] {
        std::fs::create_dir_all(dir.join(package)).unwrap();
    }
    std::fs::write(dir.join("foo/catalog.json"), br#"{"schema":"olm.package","name":"foo"}"#).unwrap();
    std::fs::write(dir.join("a-b/catalog.json"), b"{}").unwrap();
    std::fs::write(dir.join(LONG).join("catalog.json"), b"[]").unwrap();
}

#[test]
fn extracts_the_config_directory_with_whiteouts_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let image = CatalogImage::open(&store, &catalog(&store), &[]).unwrap();
    assert_eq!(image.configs_dir(), "/configs");
    assert_eq!(image.platforms(), ["linux/amd64", "linux/arm64"], "the attestation manifest is left out");
    let into = dir.path().join("configs");
    std::fs::create_dir(&into).unwrap();
    image.extract_configs(&into).unwrap();
    assert_eq!(tree(&into), catalog_tree());
}

#[test]
fn keeps_only_the_platforms_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(dir.path()).unwrap();
    let top = catalog(&store);
    let arm = [Platform::parse("linux/arm64").unwrap()];
    let image = CatalogImage::open(&store, &top, &arm).unwrap();
    assert_eq!(image.platforms(), ["linux/arm64"]);
    let configs = dir.path().join("filtered");
    filtered(&configs);
    let rebuilt = image.rebuild(&store, &configs).unwrap();
    assert_eq!(rebuilt.platforms, ["linux/arm64"]);
    let index = read_doc(&store, &rebuilt.digest);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let e = CatalogImage::open(&store, &top, &[Platform::parse("linux/s390x").unwrap()]).unwrap_err();
    assert!(e.to_string().contains("no image manifest for the platforms asked for"), "{e}");
}

#[test]
fn a_rebuild_gives_the_same_digest_in_another_store() {
    let mut digests = Vec::new();
    for round in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::create(&dir.path().join(format!("store-{round}"))).unwrap();
        let image = CatalogImage::open(&store, &catalog(&store), &[]).unwrap();
        let configs = dir.path().join("filtered");
        filtered(&configs);
        let first = image.rebuild(&store, &configs).unwrap();
        let again = image.rebuild(&store, &configs).unwrap();
        assert_eq!(first.digest, again.digest);
        let temps = std::fs::read_dir(store.state(crate::store::State::Tmp)).unwrap().count();
        assert_eq!(temps, 0, "no temp file is left, whether the blob was new or not");
        digests.push(first.digest);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn the_rebuilt_image_has_two_new_layers_in_every_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let top = catalog(&store);
    let image = CatalogImage::open(&store, &top, &[]).unwrap();
    let configs = dir.path().join("filtered");
    filtered(&configs);
    let rebuilt = image.rebuild(&store, &configs).unwrap();
    assert_eq!((rebuilt.reference.as_deref(), rebuilt.media_type.as_str()), (None, OCI_INDEX));
    assert_eq!(rebuilt.platforms, ["linux/amd64", "linux/arm64"]);
    let index = read_doc(&store, &rebuilt.digest);
    let old = read_doc(&store, &top);
    assert_eq!(index["annotations"], old["annotations"]);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "the attestation is dropped");
    let mut seen = std::collections::HashSet::new();
    assert!(rebuilt.blobs.iter().all(|b| seen.insert(b.digest.clone())), "each blob once");
    assert_eq!(rebuilt.blobs[0].digest, rebuilt.digest);
    for (i, d) in manifests.iter().enumerate() {
        assert_eq!(d["platform"], old["manifests"][i]["platform"]);
        let m = read_doc(&store, &digest_at(d, "/digest"));
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["annotations"]["org.opencontainers.image.title"], "catalog");
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 4);
        assert!(layers[2..].iter().all(|l| l["mediaType"] == OCI_LAYER));
        let config = read_doc(&store, &digest_at(&m, "/config/digest"));
        let whiteouts = std::fs::read(store.path(&digest_at(&layers[2], "/digest"))).unwrap();
        let tree_layer = std::fs::read(store.path(&digest_at(&layers[3], "/digest"))).unwrap();
        check_config(&config, &gunzip(&whiteouts), &gunzip(&tree_layer));
        for l in layers.iter().chain([&m["config"], d]) {
            assert!(rebuilt.blobs.iter().any(|b| b.digest == digest_at(l, "/digest")), "{l} is listed");
        }
        assert_eq!(
            entries(&gunzip(&whiteouts)),
            [(".wh.configs".to_string(), None), ("tmp/.wh.cache".to_string(), None)]
        );
        check_gzip_header(&whiteouts);
        check_gzip_header(&tree_layer);
    }
    let tree_layer = read_doc(&store, &digest_at(&manifests[0], "/digest"))["layers"][3]["digest"].clone();
    let tar = gunzip(&std::fs::read(store.path(&tree_layer.as_str().unwrap().parse().unwrap())).unwrap());
    let listed: Vec<(String, Option<Vec<u8>>)> = entries(&tar);
    let expected: Vec<(String, Option<Vec<u8>>)> = [
        ("configs/".to_string(), None),
        ("configs/a-b/".to_string(), None),
        ("configs/a-b/catalog.json".to_string(), Some(&b"{}"[..])),
        (format!("configs/{LONG}/"), None),
        (format!("configs/{LONG}/catalog.json"), Some(b"[]")),
        ("configs/foo/".to_string(), None),
        ("configs/foo/catalog.json".to_string(), Some(br#"{"schema":"olm.package","name":"foo"}"#)),
    ]
    .into_iter()
    .map(|(n, d)| (n, d.map(<[u8]>::to_vec)))
    .collect();
    assert_eq!(listed, expected);

    // The rebuilt image read back: its config directory is the filtered tree.
    let again = CatalogImage::open(&store, &rebuilt.digest, &[]).unwrap();
    let into = dir.path().join("back");
    std::fs::create_dir(&into).unwrap();
    again.extract_configs(&into).unwrap();
    assert_eq!(tree(&into), tree(&configs));
}

fn check_config(config: &Value, whiteouts: &[u8], tree_layer: &[u8]) {
    let ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[2], Digest::of(whiteouts).to_string());
    assert_eq!(ids[3], Digest::of(tree_layer).to_string());
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    assert!(history[2..].iter().all(|h| h["created"] == "1970-01-01T00:00:00Z"), "{history:?}");
    assert_eq!(config["config"]["Cmd"], json!(["serve", "/configs"]));
    assert_eq!(config["config"]["Entrypoint"], json!(["/bin/opm"]));
    assert_eq!(config["config"]["Labels"], json!({ CONFIGS_LABEL: "/configs", "vendor": "test" }));
}

/// The entries of a tar: name and, for a file, its bytes; every header fixed.
fn entries(tar: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 0));
        assert_eq!((h.username().unwrap(), h.groupname().unwrap()), (Some(""), Some("")));
        let is_dir = h.entry_type().is_dir();
        assert_eq!(h.mode().unwrap(), if is_dir { 0o755 } else { 0o644 });
        let name = e.path().unwrap().to_str().unwrap().to_string();
        let name = if is_dir { format!("{}/", name.trim_end_matches('/')) } else { name };
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, (!is_dir && !data.is_empty()).then_some(data)));
    }
    out
}

/// gzip magic, deflate, no flags (no name), mtime 0, OS 255.
fn check_gzip_header(gz: &[u8]) {
    assert_eq!(&gz[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert_eq!(gz[9], 255);
}

#[test]
fn a_single_docker_manifest_gets_docker_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let layers = catalog_layers();
    let m = manifest(&store, DOCKER_MANIFEST, &config("amd64", &layers, labels()), &layers);
    let image = CatalogImage::open(&store, &Digest::of(&m), &[]).unwrap();
    assert_eq!(image.platforms(), ["linux/amd64"]);
    let configs = dir.path().join("filtered");
    filtered(&configs);
    let rebuilt = image.rebuild(&store, &configs).unwrap();
    assert_eq!(rebuilt.media_type, DOCKER_MANIFEST);
    assert_eq!(rebuilt.platforms, ["linux/amd64"]);
    let doc = read_doc(&store, &rebuilt.digest);
    assert_eq!(doc["mediaType"], DOCKER_MANIFEST);
    assert!(doc["layers"].as_array().unwrap()[2..].iter().all(|l| l["mediaType"] == DOCKER_LAYER));
    assert_eq!(rebuilt.blobs.len(), 1 + 1 + 4);
}

/// The error opening the standard catalog with `upper` as its top layer and extracting it.
fn extract_error(upper: &[E]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let mut layers = catalog_layers();
    layers.push(tar(upper));
    let image =
        CatalogImage::open(&store, &catalog_with(&store, OCI_INDEX, &layers, [labels(), labels()]), &[]).unwrap();
    let into = dir.path().join("configs");
    std::fs::create_dir(&into).unwrap();
    let e = image.extract_configs(&into).unwrap_err();
    assert_eq!(e.status(), crate::error::Status::Usage, "{e}");
    assert!(!dir.path().join("x").exists() && !dir.path().join("escaped").exists());
    e.to_string()
}

#[test]
fn hostile_layers_are_refused() {
    let cases: [(&[E], &str); 6] = [
        (&[E::File("../x", b"out")], "entry ../x: an absolute path or a `..` component is refused"),
        (&[E::File("configs/../../x", b"out")], "entry configs/../../x: an absolute path or a `..`"),
        (&[E::File("/etc/escaped", b"out")], "entry /etc/escaped: an absolute path or a `..`"),
        (&[E::Symlink("configs/evil", "/etc")], "Symlink under the config directory"),
        (&[E::HardLink("configs/foo/catalog.json", "etc/passwd")], "Link under the config directory"),
        (&[E::Claims("configs/huge.json", 5 << 30)], "5368709120 bytes, more than the 4294967296 bytes"),
    ];
    for (upper, expected) in cases {
        let e = extract_error(upper);
        assert!(e.contains(expected), "{e}");
        assert!(e.contains("catalog image sha256:") && e.contains("layer sha256:"), "names image and layer: {e}");
    }
}

#[test]
fn the_entry_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let image = CatalogImage::open(&store, &catalog(&store), &[]).unwrap();
    let layers = &image.platforms[0].layers;
    let small = extract::Limits { bytes: MAX_CONFIG_BYTES, entries: 5 };
    let e = extract::extract("catalog", layers, "/configs", dir.path(), small).unwrap_err().to_string();
    assert!(e.contains("more than 5 entries under the config directory"), "{e}");
    let into = dir.path().join("fits");
    std::fs::create_dir(&into).unwrap();
    let bytes = catalog_tree().values().flatten().map(|f| f.len() as u64).sum::<u64>();
    let exact = extract::Limits { bytes, entries: MAX_CONFIG_ENTRIES };
    extract::extract("catalog", layers, "/configs", &into, exact).unwrap();
    let e = extract::extract("catalog", layers, "/configs", &into, extract::Limits { bytes: bytes - 1, ..exact })
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("more than the {} bytes", bytes - 1)), "{e}");
}

#[test]
fn catalogs_that_are_not_usable_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let layers = catalog_layers();
    let open = |top: &Digest| CatalogImage::open(&store, top, &[]).unwrap_err().to_string();

    let no_label = catalog_with(&store, OCI_INDEX, &layers, [labels(), json!({"vendor": "test"})]);
    let e = open(&no_label);
    assert!(e.starts_with("not a file-based catalog: catalog image sha256:") && e.contains("(linux/arm64)"), "{e}");
    assert!(e.contains(&format!("has no label {CONFIGS_LABEL}")), "{e}");

    let elsewhere = catalog_with(&store, OCI_INDEX, &layers, [labels(), json!({ CONFIGS_LABEL: "/catalog" })]);
    let e = open(&elsewhere);
    assert!(
        e.contains("platforms disagree on the config directory: /configs on linux/amd64, /catalog on linux/arm64"),
        "{e}"
    );

    let escaping = catalog_with(&store, OCI_INDEX, &layers, [json!({ CONFIGS_LABEL: "/../x" }), labels()]);
    assert!(open(&escaping).contains("is '/../x', not a directory path"), "{}", open(&escaping));

    let bare = vec![tar(&[E::File("bin/opm", b"#!opm"), E::File("configsx/a.json", b"{}")])];
    let image = CatalogImage::open(&store, &catalog_with(&store, OCI_INDEX, &bare, [labels(), labels()]), &[]).unwrap();
    let e = image.extract_configs(dir.path()).unwrap_err().to_string();
    assert!(e.ends_with(": the catalog's layers have no /configs"), "{e}");

    let top = catalog(&store);
    let index = read_doc(&store, &top);
    let amd64 = read_doc(&store, &digest_at(&index, "/manifests/0/digest"));
    let mut big = read_doc(&store, &top);
    big["manifests"][1]["size"] = (MAX_MANIFEST + 1).into();
    let e = open(&put(&store, &serde_json::to_vec(&big).unwrap()));
    assert!(
        e.contains(&format!(
            "platform manifest {} is larger than {MAX_MANIFEST} bytes",
            big["manifests"][1]["digest"].as_str().unwrap()
        )),
        "{e}"
    );

    let layer = digest_at(&amd64, "/layers/1/digest");
    std::fs::remove_file(store.path(&layer)).unwrap();
    let e = open(&top);
    assert!(e.contains(&format!("(linux/amd64): layer {layer} is not in the store")), "{e}");

    let missing = Digest::of(b"nothing");
    assert!(open(&missing).contains(&format!("manifest {missing} is not in the store")));
}

/// Like tests/common's `have`: skip when umoci is missing, fail under CI=true.
fn have_umoci() -> bool {
    let found = std::process::Command::new("umoci").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "umoci is required under CI=true");
        eprintln!("skipping: umoci is not installed");
    }
    found
}

/// The rootfs umoci unpacks (under `out`) from each linux manifest of index `top` in the
/// layout that `store` is (umoci takes a manifest, not an index: each is named by its
/// architecture in index.json), with that architecture.
fn umoci_unpack(store: &BlobStore, top: &Digest, out: &Path) -> Vec<(String, std::path::PathBuf)> {
    let index = read_doc(store, top);
    let platforms: Vec<(Digest, u64, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["platform"]["os"] == "linux")
        .map(|d| {
            (
                digest_at(d, "/digest"),
                d["size"].as_u64().unwrap(),
                d["platform"]["architecture"].as_str().unwrap().into(),
            )
        })
        .collect();
    let entries: Vec<crate::oci::IndexEntry> = platforms
        .iter()
        .map(|(digest, size, arch)| crate::oci::IndexEntry {
            digest,
            media_type: OCI_MANIFEST,
            size: *size,
            reference: Some(arch),
        })
        .collect();
    std::fs::write(store.root().join("index.json"), crate::oci::index_json(&entries)).unwrap();
    let mut unpacked = Vec::new();
    for (_, _, arch) in platforms {
        let bundle = out.join(&arch);
        let done = std::process::Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{arch}", store.root().display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(done.status.success(), "umoci unpack {arch}: {}", String::from_utf8_lossy(&done.stderr));
        unpacked.push((arch, bundle.join("rootfs")));
    }
    unpacked
}

#[test]
fn umoci_agrees_with_the_extraction_and_unpacks_the_rebuilt_catalog_to_the_filtered_tree() {
    if !have_umoci() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("layout")).unwrap();
    let top = catalog(&store);
    let original = umoci_unpack(&store, &top, &dir.path().join("original"));
    assert_eq!(original.len(), 2);
    for (arch, rootfs) in original {
        assert_eq!(tree(&rootfs.join("configs")), catalog_tree(), "{arch}: whiteouts as umoci applies them");
    }
    let image = CatalogImage::open(&store, &top, &[]).unwrap();
    let configs = dir.path().join("filtered");
    filtered(&configs);
    let rebuilt = image.rebuild(&store, &configs).unwrap();
    for (arch, rootfs) in umoci_unpack(&store, &rebuilt.digest, &dir.path().join("rebuilt")) {
        assert_eq!(tree(&rootfs.join("configs")), tree(&configs), "{arch}");
        assert!(!rootfs.join("tmp/cache").exists(), "the pre-built cache is gone");
        assert_eq!(std::fs::read(rootfs.join("bin/opm")).unwrap(), b"#!opm");
    }
}

#[test]
fn a_prebuilt_cache_is_found_and_dropped_and_cmd_keeps_its_program() {
    let config = json!({
        "config": {
            "Cmd": ["/bin/opm", "serve", "/configs", "--cache-dir", "cache"],
            "WorkingDir": "/var",
            "Labels": { CACHE_LABEL: "/tmp/cache/", CONFIGS_LABEL: "/configs" },
        },
        "rootfs": { "diff_ids": [] },
    });
    let gone = cache_dirs("catalog", &config).unwrap();
    assert_eq!(gone, ["/tmp/cache", "/var/cache"]);
    let layer = layers::Built { diff_id: Digest::of(b"tar"), digest: Digest::of(b"gz"), size: 2 };
    let rebuilt = rebuilt_config(&config, &[&layer, &layer], &gone);
    assert_eq!(rebuilt["config"]["Cmd"], json!(["/bin/opm", "serve", "/configs"]), "no entrypoint: the program stays");
    assert_eq!(rebuilt["config"]["Labels"], json!({ CONFIGS_LABEL: "/configs" }));
    assert_eq!(rebuilt["rootfs"]["diff_ids"], json!([layer.diff_id.to_string(), layer.diff_id.to_string()]));
    assert!(rebuilt.get("history").is_none(), "a config without history gets none");

    let escaping = json!({ "config": { "Cmd": ["serve", "/configs", "--cache-dir=../../etc"] } });
    let e = cache_dirs("catalog image X", &escaping).unwrap_err().to_string();
    assert!(e.contains("the cache directory '../../etc' is not a directory path"), "{e}");
    assert_eq!(image_dir("/a/./b", "/"), None);
    assert_eq!(image_dir("/", "/"), None);
    assert_eq!(image_dir("b//c/", "/a"), Some("/a/b/c".into()));
}

#[test]
fn a_rebuild_takes_only_directories_and_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let image = CatalogImage::open(&store, &catalog(&store), &[]).unwrap();
    let configs = dir.path().join("filtered");
    filtered(&configs);
    std::os::unix::fs::symlink("/etc", configs.join("foo/etc")).unwrap();
    let e = image.rebuild(&store, &configs).unwrap_err().to_string();
    assert!(e.ends_with("foo/etc: neither a directory nor a regular file"), "{e}");
    let e = image.rebuild(&store, &dir.path().join("absent")).unwrap_err().to_string();
    assert!(e.contains("absent"), "{e}");
}

#[test]
fn a_file_that_shrinks_while_archived_is_an_error() {
    let mut short = layers::Exactly { inner: &b"ab"[..], left: 3 };
    let e = std::io::copy(&mut short, &mut std::io::sink()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    let mut exact = layers::Exactly { inner: &b"abc"[..], left: 3 };
    assert_eq!(std::io::copy(&mut exact, &mut std::io::sink()).unwrap(), 3);
}

#[test]
fn a_docker_manifest_list_stays_one_with_docker_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::create(&dir.path().join("store")).unwrap();
    let top = catalog_with(&store, DOCKER_LIST, &catalog_layers(), [labels(), labels()]);
    let image = CatalogImage::open(&store, &top, &[]).unwrap();
    let configs = dir.path().join("filtered");
    filtered(&configs);
    let rebuilt = image.rebuild(&store, &configs).unwrap();
    assert_eq!(rebuilt.media_type, DOCKER_LIST);
    let list = read_doc(&store, &rebuilt.digest);
    assert_eq!(list["mediaType"], DOCKER_LIST);
    for d in list["manifests"].as_array().unwrap() {
        assert_eq!(d["mediaType"], DOCKER_MANIFEST);
        let m = read_doc(&store, &digest_at(d, "/digest"));
        assert_eq!(m["mediaType"], DOCKER_MANIFEST);
        assert_eq!(m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
        assert!(m["layers"].as_array().unwrap().iter().all(|l| l["mediaType"] == DOCKER_LAYER));
    }
}
