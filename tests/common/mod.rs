//! Shared test helpers.
#![allow(dead_code)]

pub mod catalog;
pub mod cluster;
pub mod distribution;
pub mod proxy;
pub mod registry;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The airlift binary under test, as an assert_cmd command.
pub fn airlift() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("airlift").expect("airlift binary");
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

pub fn airlift_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("airlift")
}

/// Whether an external tool is available. Under `CI=true` a missing tool fails the test;
/// elsewhere the test prints why it is skipped and returns early.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required under CI=true but is not installed (see .ci/run)");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("airlift-test").tempdir().expect("tempdir")
}

/// Path of a file under the repository's testdata/.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// Run a command and return stdout, panicking with stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic incompressible bytes (xorshift64*).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write an OCI image layout at `dir` with one image per entry of `images`, each image
/// having layers of the given sizes (random, stored as gzip media type). Returns the
/// manifest digests. Images share nothing, except that layer `i` of every image uses
/// the same seed when `shared` is true.
pub fn make_layout(dir: &Path, images: &[&[usize]], shared: bool) -> Vec<String> {
    make_layout_seeded(dir, images, shared, 0)
}

/// [`make_layout`] with every layer's seed moved by `base`: another base, other bytes.
pub fn make_layout_seeded(dir: &Path, images: &[&[usize]], shared: bool, base: u64) -> Vec<String> {
    layout_with(dir, images, shared, base, |data| (data.to_vec(), sha256_hex(data)))
}

/// [`make_layout`] with layers a container runtime can apply: each a gzip tar holding one
/// file of the random bytes (podman pulls them), its diff_id the tar's digest.
pub fn make_tar_layout(dir: &Path, images: &[&[usize]]) -> Vec<String> {
    layout_with(dir, images, false, 0, |data| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("data-{}", &sha256_hex(data)[..12]), data).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        (gz.finish().unwrap(), sha256_hex(&tar))
    })
}

/// A layout of `images`; `layer` turns a layer's random bytes into its blob and diff_id.
fn layout_with(
    dir: &Path,
    images: &[&[usize]],
    shared: bool,
    base: u64,
    layer: impl Fn(&[u8]) -> (Vec<u8>, String),
) -> Vec<String> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut index = Vec::new();
    let mut digests = Vec::new();
    for (n, layers) in images.iter().enumerate() {
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, &size) in layers.iter().enumerate() {
            let seed = base + if shared { 1000 + i as u64 } else { (n as u64 + 1) * 1000 + i as u64 };
            let (blob, diff_id) = layer(&noise(seed, size));
            diff_ids.push(format!("sha256:{diff_id}"));
            let d = put(&blob);
            layer_descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": blob.len() }));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "config": { "Env": [format!("IMAGE={n}")] },
        }))
        .unwrap();
        let cd = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len() },
            "layers": layer_descs,
        }))
        .unwrap();
        let md = put(&manifest);
        index.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": format!("img-{n}") } }));
        digests.push(md);
    }
    let idx = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index });
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&idx).unwrap()).unwrap();
    digests
}

/// Make a key pair in `dir`; returns (secret key path, public key path).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    airlift().args(["keygen", "--out"]).arg(dir).args(["--name", name]).assert().success();
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")))
}

/// The digest of the testdata image with ref name `reference`.
pub fn testdata_digest(reference: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("layout").join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pack `sources` into DIR/bundle; returns (bundle, public key).
pub fn pack_sources(dir: &Path, sources: &[String]) -> (PathBuf, PathBuf) {
    let (key, public) = keygen(&dir.join("keys"), "site");
    let bundle = dir.join("bundle");
    airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&bundle)
        .args(sources)
        .assert()
        .success();
    (bundle, public)
}

/// Wait until the clock has passed the signed expiry of the bundle `airlift` in `dir`
/// (packed with a short `--expires`, which counts from now); returns that expiry.
pub fn wait_until_expired(dir: &Path) -> u64 {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("airlift.manifest.json")).expect("manifest")).expect("json");
    let expires = manifest["expires"].as_u64().expect("an expiry");
    while airlift::time::now() <= expires {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    expires
}

/// Every file directly in `dir`, by name, with its bytes.
pub fn dir_contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}
